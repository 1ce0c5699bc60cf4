"""Latency of the exported `serving_default` signature (complete the bottom half of 28x28x1 images).

```
.venv/bin/python bench/serving_latency.py [--presets=tiny,default] [--batch_sizes=1,16] [--runs=5]
```
For each preset, builds a Fashion-MNIST-shaped (28x28x1) local_1d model (untrained: latency does not depend on the
weights), exports it with `export.export_model`, then loads the SavedModel in a fresh process (without
`imagetransformer` on its path, as TF Serving would) and times `serving_default` on batches of 1 and 16 images:
one warm-up call (reported as `first_call_s`), then `--runs` timed calls; the median is the result. Prints one
JSON object.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SHAPE = (28, 28, 1)
PRESETS = {
    # A tiny model, as in the tests but Fashion-MNIST-shaped.
    "tiny": dict(num_layers=2, hidden_size=32, num_heads=2, filter_size=64, block_length=112, memory_length=112,
                 num_mixtures=5),
    # The design's default width and depth (6 layers, hidden 256, 8 heads, filter 512, 10 mixtures); query blocks of
    # 196 positions (a quarter of the image) with 196 positions of memory, since 256 does not divide 784.
    "default": dict(num_layers=6, hidden_size=256, num_heads=8, filter_size=512, block_length=196,
                    memory_length=196, num_mixtures=10),
}

CHILD = r"""
import json, os, statistics, sys, time
saved_model_dir, batch_sizes, runs = sys.argv[1], [int(b) for b in sys.argv[2].split(",")], int(sys.argv[3])
sys.path[:] = [p for p in sys.path if p and not os.path.exists(os.path.join(p, "imagetransformer"))]
import numpy as np
import tensorflow as tf
start = time.perf_counter()
loaded = tf.saved_model.load(saved_model_dir)
serve = loaded.signatures["serving_default"]
result = {"load_s": time.perf_counter() - start, "tensorflow": tf.__version__, "batches": {}}
rng = np.random.RandomState(0)
for batch in batch_sizes:
    top = tf.constant(rng.randint(0, 256, (batch, 14, 28, 1)).astype(np.uint8))
    start = time.perf_counter()
    serve(top_half=top)["images"].numpy()
    first = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        images = serve(top_half=top)["images"].numpy()
        times.append(time.perf_counter() - start)
    assert images.shape == (batch, 28, 28, 1)
    median = statistics.median(times)
    result["batches"][str(batch)] = {
        "median_s": median, "min_s": min(times), "max_s": max(times), "runs": runs, "first_call_s": first,
        "images_per_s": batch / median, "ms_per_decoder_step": 1000 * median / (14 * 28),
    }
print(json.dumps(result))
"""


def export_preset(name, directory):
    sys.path.insert(0, REPO)
    import keras

    import imagetransformer as it
    from imagetransformer.export import export_model

    keras.utils.set_random_seed(0)
    model = it.ImageTransformer(image_shape=IMAGE_SHAPE, attention="local_1d", dropout=0.0, **PRESETS[name])
    start = time.perf_counter()
    result = export_model(model, os.path.join(directory, name))
    return result.saved_model_dir, time.perf_counter() - start, model.count_params()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,default", help=f"comma-separated, from {', '.join(PRESETS)}")
    parser.add_argument("--batch_sizes", default="1,16")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    presets = [p for p in args.presets.split(",") if p]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown presets {unknown}; choose from {', '.join(PRESETS)}")

    report = {
        "benchmark": "serving_default latency (complete 14 of 28 rows, 28x28x1), SavedModel in a fresh process",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_before": os.getloadavg()},
        "command": " ".join([os.path.relpath(sys.executable, REPO), "bench/serving_latency.py", *sys.argv[1:]]),
        "results": {},
    }
    with tempfile.TemporaryDirectory() as directory:
        for name in presets:
            saved_model_dir, export_s, params = export_preset(name, directory)
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            child = subprocess.run([sys.executable, "-c", CHILD, saved_model_dir, args.batch_sizes, str(args.runs)],
                                   cwd=directory, env=env, capture_output=True, text=True, timeout=3600)
            if child.returncode:
                sys.exit(f"benchmark process failed:\n{child.stderr[-3000:]}")
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            report["results"][name] = {"model": dict(PRESETS[name], attention="local_1d", image_shape=IMAGE_SHAPE),
                                       "parameters": params, "export_s": export_s, **measured}
    report["machine"]["loadavg_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

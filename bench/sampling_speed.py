"""Cached vs naive decoding vs one forward pass, on the paper-sized CIFAR-10 model (random weights).

Completes the bottom half (16 rows = 512 pixels) of a batch of 32x32x3 images and prints one JSON line per
attention type:

    python bench/sampling_speed.py [--attention=local_1d,local_2d,global] [--batch_size=4] [--repeats=3]

`cached_xla_s` and `cached_graph_s` decode with the default number of parallel loops (`loops`: the batch cut into
groups decoded side by side, one per core, see `Decoder`), `*_one_loop_s` with one loop over the whole batch.
`cached_graph_bf16_s` is the graph executor with bfloat16 key/value caches (`--cache_dtype=bfloat16` of
`complete` and of `python -m imagetransformer.export`). Timings are medians of `--repeats` runs after a warm-up
(compilation excluded). `exported` times the exported `complete` signature loaded in a fresh process without
`imagetransformer` on its path, as TF Serving runs it, on the same images: one export per
`--exported_cache_dtypes` (and the opt-in XLA export, `--jit_compile`: float32 caches, its loop compiled by XLA, as
TF Serving runs it with `--xla_cpu_compilation_enabled=true`), each under every `--exported_threads` setting
(`INTRA:INTER`, as TF Serving's `--tensorflow_intra_op_parallelism` / `--tensorflow_inter_op_parallelism`; 0 is
TensorFlow's default, one thread per core); `over_xla` is its time over in-process XLA decoding timed just before
and just after that export's timings (`xla_around_s`, their mean: this machine's speed drifts over minutes).
`exported_complete_s` is the default export under the first thread setting. `--exported_batch_sizes` adds
images/s at those batch sizes. `bytes_per_step` is what one cached
step reads at least (every weight once, plus the key/value caches), next to the machine's memory bandwidth
measured by a large array copy. The naive decoder re-runs the whole network once per generated pixel; unless
`--naive_steps=512`, its time is measured on `--naive_steps` pixels and scaled to 512 (each naive step costs the
same full forward pass).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import common  # the repository on sys.path, quiet logs
from absl import flags
import numpy as np
import tensorflow as tf

import imagetransformer as it
from imagetransformer.export import DEFAULT_CACHE_DTYPE
from imagetransformer.generation.sampling import default_parallel_loops, get_decoder, per_image_seeds

FLAGS = flags.FLAGS
flags.DEFINE_list("attention", ["local_1d", "local_2d", "global"], "Attention types to time.")
flags.DEFINE_integer("batch_size", 4, "Images per batch.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (median reported).")
flags.DEFINE_integer("naive_steps", 8, "Naive decoder steps timed (scaled to all generated pixels).")
flags.DEFINE_integer("num_layers", 6, "Decoder blocks.")
flags.DEFINE_list("exported_batch_sizes", [], "Also time the exported `complete` at these batch sizes (images/s).")
flags.DEFINE_bool("exported_xla", True, "Also time the opt-in XLA export (`--jit_compile`, float32 caches).")
flags.DEFINE_list("exported_cache_dtypes", ["bfloat16", "float32"], "Time the (graph) export with these cache dtypes.")
flags.DEFINE_list("exported_threads", ["0:0", "1:0"],
                  "Thread settings the exports are timed under, INTRA:INTER as TF Serving's "
                  "--tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism (0: TensorFlow's default).")

# Times the exported `complete` signature in a fresh process: argv = saved_model_dir, images.npy, repeats,
# extra batch sizes, INTRA:INTER threads. Prints one JSON line.
CHILD = r"""
import json, os, statistics, sys, time
saved_model_dir, images_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
batch_sizes = [int(b) for b in sys.argv[4].split(",") if b]
intra, inter = (int(n) for n in sys.argv[5].split(":"))
sys.path[:] = [p for p in sys.path if p and not os.path.exists(os.path.join(p, "imagetransformer"))]
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(intra)
tf.config.threading.set_inter_op_parallelism_threads(inter)
complete = tf.saved_model.load(saved_model_dir).signatures["complete"]
def timed(top):
    batch = top.shape[0]
    call = lambda: complete(top_half=tf.constant(top), seed=tf.zeros([batch], tf.int64),
                            temperature=tf.ones([batch]))["images"].numpy()
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); call(); times.append(time.perf_counter() - start)
    return statistics.median(times)
top = np.load(images_path)
result = {"exported_complete_s": timed(top), "exported_images_per_s": {}}
for batch in batch_sizes:
    tiled = np.resize(top, (batch, *top.shape[1:]))
    result["exported_images_per_s"][str(batch)] = batch / timed(tiled)
print(json.dumps(result))
"""

PAPER = common.paper_model_kwargs()  # the paper's CIFAR-10 model (configs.CIFAR10_LOCAL_1D)


def main(argv):
    del argv
    tf.random.set_seed(0)
    known_rows = 16
    for attention in FLAGS.attention:
        model = it.ImageTransformer(**{**PAPER, "attention": attention, "num_layers": FLAGS.num_layers})
        images = np.random.RandomState(0).randint(0, 256, (FLAGS.batch_size, 32, 32, 3)).astype(np.uint8)
        forward = tf.function(lambda x: model(x, training=False))
        forward_s = common.median_time(lambda: forward(images).numpy(), FLAGS.repeats)
        result = {"attention": attention, "batch_size": FLAGS.batch_size, "num_layers": FLAGS.num_layers,
                  "generated_pixels": 32 * 32 - known_rows * 32, "forward_s": round(forward_s, 4)}

        def cached_s(jit, loops=None, cache_dtype=None):
            return common.median_time(lambda: it.complete(model, images, known_rows, seed=0, jit_compile=jit,
                                                          parallel_loops=loops, cache_dtype=cache_dtype).numpy(),
                                      FLAGS.repeats)

        for jit in (False, True):
            name = f"cached_{'xla' if jit else 'graph'}"
            result[f"{'xla' if jit else 'graph'}_loops"] = default_parallel_loops(jit)
            for loops, key in ((None, f"{name}_s"), (1, f"{name}_one_loop_s")):
                result[key] = round(cached_s(jit, loops), 4)
        # bfloat16 key/value caches on the graph executor (`cache_dtype`, an export option).
        result["cached_graph_bf16_s"] = round(cached_s(False, cache_dtype="bfloat16"), 4)
        result["graph_bf16_over_xla"] = round(result["cached_graph_bf16_s"] / result["cached_xla_s"], 2)
        # Naive: one full forward pass per generated pixel.
        decoder = get_decoder(model)
        order = model.order
        tokens = order.to_sequence(tf.cast(images, tf.int32))
        noise = decoder.noise(per_image_seeds(0, FLAGS.batch_size))
        temperature = tf.ones([FLAGS.batch_size])
        steps = min(FLAGS.naive_steps, result["generated_pixels"])
        known = order.known_length(known_rows)

        def naive():  # the first `steps` generated pixels; every naive step is one full forward pass
            return decoder.run(tokens, known, noise, temperature, use_cache=False, stop=known + steps)[0].numpy()

        naive_s = common.median_time(naive, max(1, FLAGS.repeats // 2)) * result["generated_pixels"] / steps
        best_cached = min(result["cached_graph_s"], result["cached_xla_s"])
        result.update(
            naive_s=round(naive_s, 2), naive_steps_timed=steps,
            speedup_vs_naive=round(naive_s / best_cached, 1),
            cached_over_forward=round(best_cached / forward_s, 2),
        )
        result.update(bytes_per_step(model, FLAGS.batch_size))
        # The exports, each timed in fresh processes under every thread setting (TF Serving's defaults first). This
        # machine's speed drifts over minutes, so each export is compared with in-process XLA decoding timed just
        # before and just after it (their mean), not with `cached_xla_s` timed minutes earlier.
        default_threads = FLAGS.exported_threads[0]
        variants = {dtype: dict(cache_dtype=dtype) for dtype in FLAGS.exported_cache_dtypes}
        if FLAGS.exported_xla:  # the opt-in XLA export (TF Serving's --xla_cpu_compilation_enabled)
            variants["xla"] = dict(jit_compile=True)
        exports, xla_around, xla_s = {}, {}, [cached_s(True)]  # one XLA timing between two exports serves both
        for name, options in variants.items():
            exports[name] = exported_timing(model, images[:, :known_rows], threads=FLAGS.exported_threads, **options)
            xla_s.append(cached_s(True))
            xla_around[name] = (xla_s[-2] + xla_s[-1]) / 2
        result["export_s"] = {name: timing["export_s"] for name, timing in exports.items()}
        result["exported"] = {
            f"{name}@{threads}": {**timing[threads], "xla_around_s": round(xla_around[name], 4), "over_xla": round(
                timing[threads]["exported_complete_s"] / xla_around[name], 2)}
            for name, timing in exports.items() for threads in FLAGS.exported_threads}
        default = f"{DEFAULT_CACHE_DTYPE}@{default_threads}"
        if default in result["exported"]:  # what `python -m imagetransformer.export` writes, as TF Serving runs it
            result["exported_complete_s"] = result["exported"][default]["exported_complete_s"]
            result["exported_over_xla"] = result["exported"][default]["over_xla"]
        print(json.dumps(result), flush=True)


def memory_bandwidth_gb_s(megabytes=256, repeats=5):
    """Copy bandwidth of this machine (bytes read + written per second), median of `repeats` 256 MB copies."""
    source = np.ones(megabytes * 2**20 // 4, np.float32)
    target = np.empty_like(source)

    def copy():
        np.copyto(target, source)

    return 2 * source.nbytes / common.median_time(copy, repeats) / 1e9


def bytes_per_step(model, batch_size):
    """The least one cached step reads: every weight once and every layer's key/value caches (float32, bfloat16)."""
    caches = model.init_caches(batch_size)["layers"]
    elements = sum(int(np.prod(t.shape)) for t in tf.nest.flatten(caches))
    weights = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)
    bandwidth = memory_bandwidth_gb_s()
    f32, bf16 = weights + 4 * elements, weights + 2 * elements
    return {"weight_mb": round(weights / 1e6, 1), "cache_mb_f32": round(4 * elements / 1e6, 1),
            "bytes_per_step_f32_mb": round(f32 / 1e6, 1), "bytes_per_step_bf16_mb": round(bf16 / 1e6, 1),
            "memory_bandwidth_gb_s": round(bandwidth, 1),
            "floor_ms_per_step_bf16": round(1e3 * bf16 / (bandwidth * 1e9), 2)}


def exported_timing(model, top_half, jit_compile=False, cache_dtype=None, threads=("0:0",)):
    """The exported `complete` signature (cache dtype: the export's default unless given) timed in a fresh
    process on `top_half`, once per thread setting in `threads` (`INTRA:INTER`).

    Returns:
        `{"export_s": seconds, threads: {"exported_complete_s": seconds, "exported_images_per_s": {...}}}`.
    """
    from imagetransformer.export import export_model  # pylint: disable=import-outside-toplevel

    result = {}
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        saved_model_dir = export_model(model, os.path.join(directory, "model"), jit_compile=jit_compile,
                                       cache_dtype=cache_dtype).saved_model_dir
        result["export_s"] = round(time.perf_counter() - start, 1)
        images_path = os.path.join(directory, "top_half.npy")
        np.save(images_path, top_half)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_NUM_INTRAOP_THREADS",
                                                                "TF_NUM_INTEROP_THREADS")}
        for setting in threads:
            child = subprocess.run(
                [sys.executable, "-c", CHILD, saved_model_dir, images_path, str(FLAGS.repeats),
                 ",".join(FLAGS.exported_batch_sizes), setting], cwd=directory, env=env, capture_output=True,
                text=True, timeout=3600)
            if child.returncode:
                sys.exit(f"exported timing failed:\n{child.stderr[-3000:]}")
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            result[setting] = {
                "exported_complete_s": round(measured["exported_complete_s"], 4),
                "exported_images_per_s": {k: round(v, 2) for k, v in measured["exported_images_per_s"].items()}}
    return result


if __name__ == "__main__":
    common.run_main(main)

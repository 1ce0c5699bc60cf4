"""Peak memory and time of one forward+backward pass vs image size, per attention type.

    python bench/attention_scaling.py [--sizes=32,64] [--attention=local_1d,local_2d,global] [--batch_size=1]

Each configuration runs in a fresh process (so peak memory is its own): it builds the model (RGB, DMoL, equal
width: hidden 256, 8 heads, filter 512, `--num_layers` blocks; local_1d blocks of 256 with 256 memory, local_2d
query blocks 8x16 with flange 8x16), then times `--repeats` gradient computations after one warm-up. Peak memory
is the process's peak resident set during the first (warm-up) pass minus the resident set before it: the
activations and gradients of one pass plus a constant for tracing. Prints one JSON line per configuration and
then the growth from each size to the next (4x the pixels when the side doubles).
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(attention, size, batch_size, num_layers, repeats):
    """Runs in the child process: returns a dict of measurements."""
    sys.path.insert(0, REPO)
    import numpy as np
    import tensorflow as tf

    import imagetransformer as it

    model = it.ImageTransformer(
        image_shape=(size, size, 3), attention=attention, num_layers=num_layers, hidden_size=256, num_heads=8,
        filter_size=512, dropout=0.0, block_length=256, memory_length=256, query_shape=(8, 16),
        memory_flange=(8, 16), distribution="dmol", num_mixtures=10)
    images = tf.constant(np.random.RandomState(0).randint(0, 256, (batch_size, size, size, 3)).astype(np.uint8))

    @tf.function
    def gradients(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model.log_prob_from_params(model(x, training=True), x))
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]

    before = rss_bytes()
    [g.numpy() for g in gradients(images)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        [g.numpy() for g in gradients(images)]
        times.append(time.perf_counter() - start)
    return {"attention": attention, "size": size, "pixels": size * size, "batch_size": batch_size,
            "num_layers": num_layers, "step_s": round(statistics.median(times), 4),
            "peak_memory_mb": round((peak - before) / 2**20, 1)}


def main():
    from absl import app, flags

    flags.DEFINE_list("sizes", ["32", "64"], "Image sides (RGB images of side x side).")
    flags.DEFINE_list("attention", ["local_1d", "local_2d", "global"], "Attention types.")
    flags.DEFINE_integer("batch_size", 1, "Images per pass.")
    flags.DEFINE_integer("num_layers", 2, "Decoder blocks.")
    flags.DEFINE_integer("repeats", 3, "Timed passes (median reported).")
    flags.DEFINE_string("child", None, "Internal: attention,size to measure in this process.")
    FLAGS = flags.FLAGS

    def run(argv):
        del argv
        if FLAGS.child:
            attention, size = FLAGS.child.split(",")
            print(json.dumps(measure(attention, int(size), FLAGS.batch_size, FLAGS.num_layers, FLAGS.repeats)))
            return
        for attention in FLAGS.attention:
            rows = []
            for size in FLAGS.sizes:
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), f"--child={attention},{size}",
                     f"--batch_size={FLAGS.batch_size}", f"--num_layers={FLAGS.num_layers}",
                     f"--repeats={FLAGS.repeats}"], capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(json.dumps(row), flush=True)
            for small, large in zip(rows, rows[1:]):
                print(json.dumps({
                    "attention": attention, "from_size": small["size"], "to_size": large["size"],
                    "pixel_ratio": large["pixels"] / small["pixels"],
                    "time_ratio": round(large["step_s"] / small["step_s"], 2),
                    "memory_ratio": round(large["peak_memory_mb"] / small["peak_memory_mb"], 2)}), flush=True)

    app.run(run)


if __name__ == "__main__":
    main()

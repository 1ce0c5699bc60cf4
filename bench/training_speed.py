"""Training throughput against the machine's own matrix-multiply peak, measured side by side in one run.

    python bench/training_speed.py [--configs=cifar10_local_1d,cifar10_local_2d,cifar10_global,fashion_mnist_small]
        [--batch_size=8] [--steps=12] [--jit_compile=config] [--mixed_precision=float32]

For each configuration, one JSON line: images/s and seconds per step (median over `--steps` training steps after
two warm-up steps), the model's FLOPs per image (forward, counted by `bench/flops.py` and checked against the
matrix products of the traced graph; a training step is 3x the forward), the achieved FLOP/s, and its share of
the fp32 peak of a 2048 x 2048 matmul measured in the same process just before (and the bf16 peak, for
reference). The step is `model.fit`'s own train function (`imagetransformer.train.build_model`: Adam with the
warm-up schedule, gradient clipping, the configured XLA and precision) on a batch held in memory, so the data
pipeline is not timed here.
"""

import json
import statistics
import time

import common  # the repository on sys.path, quiet logs
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from flops import analytic_forward_flops, graph_forward_flops
from imagetransformer.training import configs
from imagetransformer.training.trainer import build_model

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["cifar10_local_1d", "cifar10_local_2d", "cifar10_global", "fashion_mnist_small"],
                  "Named configurations (imagetransformer/training/configs.py) to time.")
flags.DEFINE_integer("batch_size", 8, "Images per training step.")
flags.DEFINE_integer("steps", 12, "Timed training steps (median reported), after two warm-up steps.")
flags.DEFINE_enum("jit_compile", "config", ["true", "false", "config"],
                  "XLA for the train step: on, off, or the configuration's own choice (Keras: none on CPU).")
flags.DEFINE_enum("mixed_precision", "float32", list(configs.MIXED_PRECISION), "Dtype policy.")
flags.DEFINE_integer("peak_size", 2048, "Side of the square matmul that measures the peak.")
flags.DEFINE_integer("inter_op_threads", 0, "TensorFlow inter-op threads (0: TensorFlow's default).")
flags.DEFINE_integer("intra_op_threads", 0, "TensorFlow intra-op threads (0: TensorFlow's default).")

IMAGE_SHAPES = {"cifar10": (32, 32, 3), "fashion_mnist": (28, 28, 1)}


def matmul_peak(dtype, n, repeats=10):
    """Median FLOP/s of an `n x n` matmul in `dtype` (in a tf.function, inputs resident)."""
    a, b = (tf.cast(tf.random.normal([n, n]), dtype) for _ in range(2))
    fn = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b)[:1, :1], tf.float32)))
    fn().numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn().numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


class StepTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def time_config(name):
    jit_compile = None if FLAGS.jit_compile == "config" else FLAGS.jit_compile == "true"
    config = configs.get_config(name, batch_size=FLAGS.batch_size, mixed_precision=FLAGS.mixed_precision,
                                jit_compile=jit_compile)
    image_shape = IMAGE_SHAPES[config.data.dataset]
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
    try:
        model = build_model(config, image_shape, tf.distribute.get_strategy())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    forward = analytic_forward_flops(model)
    traced = graph_forward_flops(model)
    images = np.random.RandomState(0).randint(0, 256, (FLAGS.batch_size, *image_shape)).astype(np.uint8)
    data = tf.data.Dataset.from_tensors(images).repeat()
    timer = StepTimes()
    model.fit(data, steps_per_epoch=FLAGS.steps + 2, epochs=1, verbose=0, callbacks=[timer])
    step_s = statistics.median(timer.times[2:])
    achieved = 3 * forward * FLAGS.batch_size / step_s
    return {
        "config": name, "attention": config.model.image_transformer.attention, "image_shape": list(image_shape),
        "parameters": model.count_params(), "batch_size": FLAGS.batch_size,
        "jit_compile": bool(model.jit_compile), "mixed_precision": FLAGS.mixed_precision,
        "step_s": round(step_s, 4), "images_per_s": round(FLAGS.batch_size / step_s, 3),
        "forward_gflop_per_image": round(forward / 1e9, 3), "graph_gflop_per_image": round(traced / 1e9, 3),
        "train_gflop_per_image": round(3 * forward / 1e9, 3), "achieved_gflop_s": round(achieved / 1e9, 1),
    }


def main(argv):
    del argv
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
    for name in FLAGS.configs:
        fp32 = matmul_peak(tf.float32, FLAGS.peak_size)
        bf16 = matmul_peak(tf.bfloat16, FLAGS.peak_size)
        result = time_config(name)
        achieved = result["achieved_gflop_s"] * 1e9
        result.update(fp32_peak_gflop_s=round(fp32 / 1e9, 1), bf16_peak_gflop_s=round(bf16 / 1e9, 1),
                      share_of_fp32_peak=round(achieved / fp32, 3))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    common.run_main(main)

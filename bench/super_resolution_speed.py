"""Sampling cost of super-resolution against unconditional sampling of the same decoder (random weights).

    python bench/super_resolution_speed.py [--config=fashion_mnist_super_resolution] [--batch_size=16] [--repeats=3]

Times `it.super_resolve` (encoder once per image, then every position with cross-attention) and `it.sample` of an
`ImageTransformer` with the same decoder, both generating all H x W positions with the cached XLA decoder, and
prints one JSON line: seconds for each (medians of `--repeats` runs after a warm-up), their ratio, and ms per
generated position. The ratio is what cross-attending to the low-resolution image costs per step.
"""

import json

import common  # the repository on sys.path, quiet logs
from absl import flags
import numpy as np

import imagetransformer as it
from imagetransformer.data import resize
from imagetransformer.training import configs

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "fashion_mnist_super_resolution", "A --task=super_resolution configuration.")
flags.DEFINE_list("image_shape", ["28", "28", "1"], "H,W,C of the images.")
flags.DEFINE_integer("batch_size", 16, "Images per batch.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (median reported).")


def main(argv):
    del argv
    image_shape = tuple(int(d) for d in FLAGS.image_shape)
    model_config = configs.get_config(FLAGS.config).model
    sr = model_config.build(image_shape, task="super_resolution")
    plain = model_config.build(image_shape, task="generation")
    images = np.random.RandomState(0).randint(0, 256, (FLAGS.batch_size, *image_shape)).astype(np.uint8)
    low_res = resize.downsample(images, sr.scale)
    sr_s = common.median_time(lambda: it.super_resolve(sr, low_res, seed=0).numpy(), FLAGS.repeats)
    plain_s = common.median_time(lambda: it.sample(plain, FLAGS.batch_size, seed=0).numpy(), FLAGS.repeats)
    positions = sr.order.length
    print(json.dumps({
        "config": FLAGS.config, "image_shape": list(image_shape), "batch_size": FLAGS.batch_size,
        "super_resolve_s": round(sr_s, 3), "sample_s": round(plain_s, 3), "ratio": round(sr_s / plain_s, 2),
        "super_resolve_ms_per_position": round(1000 * sr_s / positions, 3),
        "sample_ms_per_position": round(1000 * plain_s / positions, 3),
    }), flush=True)


if __name__ == "__main__":
    common.run_main(main)

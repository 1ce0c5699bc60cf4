"""Super-resolution grids: super-resolve downsampled test images into a PNG grid.

The program `python -m imagetransformer.super_resolve` runs `main` below:

    python -m imagetransformer.super_resolve --model_dir=runs/sr | --preset=NAME --output=super_resolution.png [--num_images=8]
        [--temperatures=0.8,1.0] [--seed=0] [--split=test] [--zoom=4]

Each row of the grid: the low-resolution input (the test image downsampled by the model's scale, shown enlarged),
its bicubic upsampling, the model's samples at each temperature, and the original. A progress bar shows the
decoding, one row of pixels at a time.
"""

import math

from absl import flags, logging
import numpy as np

from imagetransformer import conditioning
from imagetransformer.training import checkpoints
from imagetransformer import data as data_lib
from imagetransformer.programs import cli
from imagetransformer.data import resize
from imagetransformer.evaluation import visualize
from imagetransformer.generation import sampling

FLAGS = flags.FLAGS
# allow_override: `imagetransformer.completions` defines flags of the same names; a process that imports both (a
# test session, bench/likelihood_study.py) must not fail. Each program parses only its own flags.
_OVERRIDE = dict(allow_override=True)
_WHAT = "a directory written by imagetransformer.train --task=super_resolution"
cli.define_model_source_flags(_WHAT)
flags.DEFINE_string("output", "super_resolution.png", "PNG file to write.", **_OVERRIDE)
flags.DEFINE_integer("num_images", 8, "Test images to downsample and super-resolve.", lower_bound=1, **_OVERRIDE)
flags.DEFINE_list("temperatures", ["0.8", "1.0"], "Sampling temperatures > 0, one grid column each.", **_OVERRIDE)
flags.DEFINE_integer("seed", 0, "Random seed: the same seed gives the same images.", **_OVERRIDE)
flags.DEFINE_string("split", "test", "Split of the model's dataset whose first images are used.", **_OVERRIDE)
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory (default: the one used in training).",
                    **_OVERRIDE)
flags.DEFINE_integer("zoom", 4, "Magnification of each image in the PNG grid (pixels per image pixel).",
                     lower_bound=1, **_OVERRIDE)

def _temperatures(values):
    try:
        temperatures = [float(v) for v in values]
    except (TypeError, ValueError):
        temperatures = []
    if not temperatures or not all(math.isfinite(t) and t > 0 for t in temperatures):
        raise ValueError(f"--temperatures={','.join(map(str, values))} must be finite numbers > 0, e.g. 0.8,1.0.")
    return temperatures


def run(model_dir, output, num_images=8, temperatures=(0.8, 1.0), seed=0, split="test", data_dir=None, zoom=4,
        progress=True):
    """Writes the grid to `output`; returns the samples, uint8 `[len(temperatures), num_images, H, W, C]`."""
    temperatures = _temperatures(temperatures)
    if not output.lower().endswith(".png"):
        raise ValueError(f"--output={output} must name a .png file.")
    model = checkpoints.load_model(model_dir)
    if not isinstance(model.condition, conditioning.LowResImage):
        raise ValueError(f"{model_dir} holds a model of class {type(model).__name__}, not a super-resolution model; train one with "
                         "python -m imagetransformer.train --task=super_resolution.")
    config = checkpoints.load_config(model_dir).get("data") or {}
    dataset = config.get("dataset")
    if not dataset:
        raise checkpoints.CheckpointError(f"{model_dir}/{checkpoints.CONFIG_FILE} names no dataset.")
    images = data_lib.load_images(dataset, split, data_dir=data_dir or config.get("data_dir"),
                                  image_shape=model.image_shape)
    originals = np.stack(list(images.dataset.take(num_images).as_numpy_iterator()))
    low_res = resize.downsample(originals, model.scale)
    samples = np.stack([
        sampling.super_resolve(model, low_res, temperature=t, seed=seed, progress=progress).numpy()
        for t in temperatures
    ])
    bicubic = resize.bicubic(low_res, model.scale).numpy()
    rows = visualize.super_resolution_rows(low_res.numpy(), bicubic, list(samples), originals, model.scale)
    visualize.save_png(visualize.image_grid(rows, scale=zoom), output)
    logging.info("Wrote %s.", output)
    return samples


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value (--helpfull lists them).")
    cli.default_to_warnings()
    model_dir = cli.model_source(_WHAT)
    with cli.exit_on_user_errors():
        samples = run(model_dir, FLAGS.output, FLAGS.num_images, FLAGS.temperatures, FLAGS.seed, FLAGS.split,
                      FLAGS.data_dir, FLAGS.zoom)
    temperatures = " | ".join(f"sample at temperature {t:g}" for t in _temperatures(FLAGS.temperatures))
    print(f"Wrote {samples.shape[1]} images x {samples.shape[0]} temperatures to {FLAGS.output} (one row per "
          f"image; columns: low resolution | bicubic | {temperatures} | original)")


def run_main():
    cli.run_program(main)

"""Completion grids: complete test images from their top rows, or sample, into a PNG grid.

The program `python -m imagetransformer.complete` runs `main` below:

    python -m imagetransformer.complete --model_dir=runs/x | --preset=NAME --output=completions.png [--num_images=8]
        [--known_rows=14] [--temperature=1.0] [--seed=0] [--split=test] [--unconditional] [--label=7,2]

Each row of the grid shows the given top rows (the rest grey), the model's completion, and the original. With
`--unconditional` the grid holds samples instead. A progress bar shows the decoding, one row of pixels at a time.
"""

import math

from absl import flags, logging
import numpy as np

from imagetransformer.training import checkpoints
from imagetransformer import data as data_lib
from imagetransformer.programs import cli
from imagetransformer.evaluation import visualize
from imagetransformer.generation import sampling

FLAGS = flags.FLAGS
cli.define_model_source_flags()
flags.DEFINE_string("output", "completions.png", "PNG file to write.")
flags.DEFINE_integer("num_images", 8, "Images to complete (or to sample).", lower_bound=1)
flags.DEFINE_integer("known_rows", None,
                     "Rows given to the model (default: half the image height; for local_2d attention rounded "
                     "down to a multiple of the query block height).")
flags.DEFINE_float("temperature", 1.0, "Sampling temperature > 0 (1.0 samples the model exactly).")
flags.DEFINE_integer("seed", 0, "Random seed: the same seed gives the same images.")
flags.DEFINE_string("split", "test", "Split of the model's dataset whose first images are completed.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data directory (default: the one used in training).")
flags.DEFINE_bool("unconditional", False, "Sample whole images instead of completing test images (a class-"
                  "conditional model samples the classes 0, 1, ... in turn).")
flags.DEFINE_list("label", None, "Class-conditional models: the classes to generate, cycled over the images "
                  "(default: samples take the classes 0, 1, ... in turn, completions each test image's own class).")
flags.DEFINE_bool("use_cache", True, "Use the cached decoder (False: the naive one, one full pass per pixel).")
flags.DEFINE_integer("zoom", 4, "Magnification of each image in the PNG grid (pixels per image pixel).",
                     lower_bound=1)


def run(model_dir, output, num_images=8, known_rows=None, temperature=1.0, seed=0, split="test", data_dir=None,
        unconditional=False, use_cache=True, scale=4, progress=True, labels=None):
    """Writes the grid to `output` and returns the generated images (uint8 `[num_images, H, W, C]`); `labels`: the
    classes a class-conditional model generates, cycled over the images."""
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"--temperature={temperature} must be a finite number > 0.")
    if not output.lower().endswith(".png"):
        raise ValueError(f"--output={output} must name a .png file.")
    model = checkpoints.load_model(model_dir)
    if not model.condition.completes_top_rows:
        raise ValueError(f"{model_dir} holds a super-resolution model: it generates images from low-resolution "
                         "ones; use python -m imagetransformer.super_resolve.")
    given = None
    if labels:
        if not model.condition.needs_labels:
            raise ValueError(f"--label={','.join(map(str, labels))}: {model_dir} holds a model that is not "
                             "class-conditional; drop --label.")
        try:
            given = np.array([int(label) for label in labels], np.int64)
        except ValueError as e:
            raise ValueError(f"--label={','.join(map(str, labels))} must be class numbers (integers).") from e
    if unconditional:
        # A class-conditional model samples the classes given, or in turn: 0, 1, ..., num_classes - 1, 0, ...
        labels = None
        if model.condition.needs_labels:
            labels = np.resize(given, num_images) if given is not None else np.arange(num_images) % model.num_classes
        samples = sampling.sample(model, num_images, temperature=temperature, seed=seed, use_cache=use_cache,
                                  progress=progress, labels=labels).numpy()
        per_row = max(1, int(math.ceil(math.sqrt(num_images))))
        rows = [list(samples[i : i + per_row]) for i in range(0, num_images, per_row)]
        visualize.save_png(visualize.image_grid(rows, scale=scale), output)
        return samples
    known_rows = sampling.default_known_rows(model) if known_rows is None else known_rows
    model.order.known_length(known_rows)  # validates before any data is read
    config = checkpoints.load_config(model_dir).get("data") or {}
    dataset = config.get("dataset")
    if not dataset:
        raise checkpoints.CheckpointError(f"{model_dir}/{checkpoints.CONFIG_FILE} names no dataset to complete.")
    images = data_lib.load_images(dataset, split, data_dir=data_dir or config.get("data_dir"),
                                  image_shape=model.image_shape, with_labels=model.condition.needs_labels)
    elements = list(images.dataset.take(num_images).as_numpy_iterator())
    labels = None
    if model.condition.needs_labels:  # each image completed given its own class, or the classes given
        elements, labels = [e[0] for e in elements], np.array([e[1] for e in elements])
        if given is not None:
            labels = np.resize(given, len(elements))
    originals = np.stack(elements)
    completed = sampling.complete(model, originals, known_rows, temperature=temperature, seed=seed,
                                  use_cache=use_cache, progress=progress, labels=labels).numpy()
    rows = visualize.completion_rows(originals, completed, originals, known_rows)
    visualize.save_png(visualize.image_grid(rows, scale=scale), output)
    logging.info("Wrote %s.", output)
    return completed


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value (--helpfull lists them).")
    cli.default_to_warnings()
    model_dir = cli.model_source()
    with cli.exit_on_user_errors():
        images = run(model_dir, FLAGS.output, FLAGS.num_images, FLAGS.known_rows, FLAGS.temperature,
                     FLAGS.seed, FLAGS.split, FLAGS.data_dir, FLAGS.unconditional, FLAGS.use_cache, FLAGS.zoom,
                     labels=FLAGS.label)
    kind = "samples" if FLAGS.unconditional else "completions"
    print(f"Wrote {len(images)} {kind} to {FLAGS.output}")


def run_main():
    cli.run_program(main)

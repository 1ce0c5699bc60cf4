"""Evaluate a trained model's bits per dimension on a dataset split.

```
python -m imagetransformer.evaluate --model_dir=runs/demo --split=test [--eval_examples=N] [--batch_size=64]
...
test bits/dim: 3.412
```
The model and its dataset come from `--model_dir` alone (`config.json` + `model.weights.h5`). Every image of the
split counts once (the last, partial batch included): the result is the mean over images of
`-log2 p(image) / (H * W * C)` (given its class for a class-conditional model, given its downsampled version for
a super-resolution model). The last line printed is `<split> bits/dim: <value>`.

For a super-resolution model (`--task=super_resolution`) the first `--sr_examples` images are also
super-resolved at temperatures 0.8 and 1.0 and scored against the originals, beside bicubic upsampling:
PSNR, SSIM and the share of samples consistent with their input (`imagetransformer.evaluation.super_resolution_metrics`).
"""

import dataclasses
import math

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from imagetransformer.training import checkpoints
from imagetransformer import data as data_lib
from imagetransformer import cli
from imagetransformer.data import resize
from imagetransformer.evaluation import super_resolution_metrics

FLAGS = flags.FLAGS
cli.define_evaluate_flags()
flags.adopt_module_key_flags(cli)  # --help lists them

DEFAULT_BATCH_SIZE = 64
SR_TEMPERATURES = (0.8, 1.0)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Bits per dimension of `num_examples` images of `dataset`'s `split`."""

    bits_per_dim: float
    num_examples: int
    dataset: str
    split: str
    # Super-resolution models: `super_resolution_metrics.evaluate_samples` of the first `sr_examples` images.
    super_resolution: dict = None


def evaluate(model_dir, split="test", eval_examples=None, batch_size=DEFAULT_BATCH_SIZE, data_dir=None, model=None,
             sr_examples=100):
    """Mean bits/dim of the images of `split` under the model of `model_dir`.

    Args:
        model_dir: a model directory written by `imagetransformer.train`.
        split: split in tfds syntax (`"test"`, `"train[:1000]"`, ...).
        eval_examples: evaluate only the first this many images of the split; None means all.
        batch_size: images per batch.
        data_dir: tfds data directory; None means the one in `model_dir/config.json`.
        model: evaluate this model instead of the one stored in `model_dir` (e.g. an untrained one built with
            `checkpoints.build_model(model_dir)`); the data still come from `model_dir/config.json`.
        sr_examples: super-resolution models: images to super-resolve and score (0: none).

    Returns:
        An `EvalResult`.

    Raises:
        CheckpointError: `model_dir` is missing, incomplete or corrupt.
        ValueError, RuntimeError: bad split, arguments or data.
    """
    if not model_dir:
        raise ValueError("--model_dir is required: a directory written by imagetransformer.train.")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"--batch_size={batch_size!r} must be an integer >= 1.")
    if eval_examples is not None and (int(eval_examples) != eval_examples or eval_examples < 1):
        raise ValueError(f"--eval_examples={eval_examples!r} must be an integer >= 1 (or absent for all images).")
    config = checkpoints.load_config(model_dir)
    if model is None:
        model = checkpoints.load_model(model_dir)
    data_config = config.get("data") or {}
    dataset = data_config.get("dataset")
    if not dataset:
        raise checkpoints.CheckpointError(
            f"{model_dir}/{checkpoints.CONFIG_FILE} names no dataset (no data.dataset entry); it was not written "
            "by imagetransformer.train.")
    try:
        images = data_lib.load_images(dataset, split, data_dir=data_dir or data_config.get("data_dir"),
                                      image_shape=model.image_shape, with_labels=model.conditional)
    except (ValueError, RuntimeError) as e:
        raise type(e)(f"--split={split} of dataset {dataset}: {e}") from e
    dataset_ = images.dataset if eval_examples is None else images.dataset.take(int(eval_examples))
    batches = data_lib.make_pipeline(dataset_, int(batch_size), training=False, cache=False,
                                     with_labels=model.conditional)

    super_resolution = model.condition_key == "low_res"

    @tf.function(input_signature=[tf.TensorSpec([None, *model.image_shape], tf.uint8),
                                  tf.TensorSpec([None], tf.int64)])
    def summed_bits(batch, labels):
        if super_resolution:  # given the downsampled image
            bits = model.bits_per_dim(batch, low_res=resize.downsample(batch, model.scale))
        else:
            bits = model.bits_per_dim(batch, labels if model.conditional else None)  # given its class if conditional
        return tf.reduce_sum(tf.cast(bits, tf.float64)), tf.shape(bits)[0]

    total, count = 0.0, 0
    for batch in batches:
        batch, labels = batch if model.conditional else (batch, tf.zeros([0], tf.int64))
        batch_sum, batch_count = summed_bits(batch, tf.cast(labels, tf.int64))
        total += float(batch_sum)
        count += int(batch_count)
    if count == 0:
        raise ValueError(f"--split={split} of dataset {dataset} has no images to evaluate.")
    bits_per_dim = total / count
    logging.info("%s %s: %d images, %.4f bits/dim.", dataset, split, count, bits_per_dim)
    report = None
    if super_resolution and sr_examples:
        originals = np.stack(list(dataset_.take(int(sr_examples)).as_numpy_iterator()))
        report = super_resolution_metrics.evaluate_samples(model, originals, SR_TEMPERATURES,
                                                           batch_size=int(batch_size))
    return EvalResult(bits_per_dim, count, dataset, split, report)


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value (--helpfull lists them).")
    cli.default_to_warnings()
    with cli.exit_on_user_errors():
        result = evaluate(FLAGS.model_dir, split=FLAGS.split, eval_examples=FLAGS.eval_examples,
                          batch_size=FLAGS.batch_size or DEFAULT_BATCH_SIZE, data_dir=FLAGS.data_dir,
                          sr_examples=FLAGS.sr_examples)
    if not math.isfinite(result.bits_per_dim):
        cli.fail(f"{result.split} bits/dim is {result.bits_per_dim}: the weights in {FLAGS.model_dir} are "
                      "not finite.")
    print(f"Evaluated {result.num_examples} images of {result.dataset} ({result.split}).")
    if result.super_resolution:
        count = min(FLAGS.sr_examples, result.num_examples)
        print(f"Super-resolution of the first {count} images (PSNR dB / SSIM against the originals; consistent: "
              "share whose downsampled version is within one grey level of the input on average):")
        for name, scores in result.super_resolution.items():
            print(f"  {name:>16}: PSNR {scores['psnr']:.2f}  SSIM {scores['ssim']:.4f}  "
                  f"consistent {scores['consistent']:.2f}  downsampled error {scores['downsampled_error']:.2f}")
    print(f"{result.split} bits/dim: {result.bits_per_dim:.3f}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)

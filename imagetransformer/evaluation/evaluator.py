"""Bits per dimension of a model directory's model on a split of its dataset (and, for super-resolution models,
PSNR/SSIM of samples against bicubic upsampling): what `python -m imagetransformer.evaluate` prints."""

import dataclasses

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from imagetransformer import conditioning
from imagetransformer import data as data_lib
from imagetransformer.evaluation import super_resolution_metrics
from imagetransformer.training import checkpoints

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
             sr_examples=100, progress=False):
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
        progress: show a progress bar (images scored, ETA) on stdout.

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
                                      image_shape=model.image_shape, with_labels=model.condition.needs_labels)
    except (ValueError, RuntimeError) as e:
        raise type(e)(f"--split={split} of dataset {dataset}: {e}") from e
    dataset_ = images.dataset if eval_examples is None else images.dataset.take(int(eval_examples))
    batches = data_lib.make_pipeline(dataset_, int(batch_size), training=False, cache=False,
                                     with_labels=model.condition.needs_labels)

    @tf.function(input_signature=[tf.TensorSpec([None, *model.image_shape], tf.uint8),
                                  tf.TensorSpec([None], tf.int64)])
    def summed_bits(batch, labels):
        # Each image given its condition: its class, its downsampled version, or nothing.
        condition = model.condition.from_examples(batch, labels)
        bits = model.bits_per_dim(batch, **({} if condition is None else {model.condition_key: condition}))
        return tf.reduce_sum(tf.cast(bits, tf.float64)), tf.shape(bits)[0]

    total, count = 0.0, 0
    known = images.num_examples if eval_examples is None else min(int(eval_examples), images.num_examples or
                                                                   int(eval_examples))
    bar = keras.utils.Progbar(known, unit_name="image", stateful_metrics=["bits/dim"]) if progress else None
    for batch in batches:
        batch, labels = batch if model.condition.needs_labels else (batch, tf.zeros([0], tf.int64))
        batch_sum, batch_count = summed_bits(batch, tf.cast(labels, tf.int64))
        total += float(batch_sum)
        count += int(batch_count)
        if bar is not None:
            bar.update(count, [("bits/dim", total / count)], finalize=False)
    if bar is not None:
        bar.update(count, [("bits/dim", total / max(count, 1))], finalize=True)
    if count == 0:
        raise ValueError(f"--split={split} of dataset {dataset} has no images to evaluate.")
    bits_per_dim = total / count
    logging.info("%s %s: %d images, %.4f bits/dim.", dataset, split, count, bits_per_dim)
    report = None
    if isinstance(model.condition, conditioning.LowResImage) and sr_examples:
        originals = np.stack(list(dataset_.take(int(sr_examples)).as_numpy_iterator()))
        report = super_resolution_metrics.evaluate_samples(model, originals, SR_TEMPERATURES,
                                                           batch_size=int(batch_size))
    return EvalResult(bits_per_dim, count, dataset, split, report)

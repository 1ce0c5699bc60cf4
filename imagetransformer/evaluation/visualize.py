"""Image grids: PNG files for people, and the same grids as TensorBoard images."""

import os

import keras
import numpy as np
from PIL import Image
import tensorflow as tf

from imagetransformer.data import resize

from imagetransformer.generation import sampling
from imagetransformer.training.checkpoints import atomic_path


def image_grid(rows, padding=2, background=255, scale=1):
    """Tiles `rows` (a list of lists of uint8 `[H, W, C]` images, all the same shape) into one uint8 image.

    Args:
        rows: the grid, row by row.
        padding: pixels between tiles and around the border.
        background: value of the padding.
        scale: integer upscaling (nearest neighbour), so small images stay visible.

    Returns:
        uint8 `[rows * (H*scale + padding) + padding, cols * (W*scale + padding) + padding, C]`.
    """
    first = np.asarray(rows[0][0])
    height, width, channels = first.shape
    height, width = height * scale, width * scale
    cols = max(len(row) for row in rows)
    grid = np.full((len(rows) * (height + padding) + padding, cols * (width + padding) + padding, channels),
                   background, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            image = np.asarray(image, np.uint8)
            if image.shape != first.shape:
                raise ValueError(f"All grid images must have shape {first.shape}, got {image.shape}.")
            image = image.repeat(scale, axis=0).repeat(scale, axis=1)
            top, left = padding + r * (height + padding), padding + c * (width + padding)
            grid[top : top + height, left : left + width] = image
    return grid


def save_png(image, path):
    """Writes a uint8 `[H, W, C]` image (C in {1, 3}) as PNG, atomically."""
    image = np.asarray(image, np.uint8)
    mode_image = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        mode_image.save(tmp, format="PNG")


def completion_rows(given, completed, originals, known_rows, shade=128):
    """One grid row per image: the given rows (the rest shaded), the completion, the original."""
    rows = []
    for given_image, completed_image, original in zip(given, completed, originals):
        shown = np.array(given_image, np.uint8)
        shown[known_rows:] = shade
        rows.append([shown, completed_image, original])
    return rows


def super_resolution_rows(low_res, bicubic, samples, originals, scale):
    """One grid row per image: the low-resolution input (enlarged by `scale`, nearest neighbour), its bicubic
    upsampling, the samples (a list of `[N, H, W, C]` arrays, e.g. one per temperature), the original."""
    rows = []
    for i, (small, smooth, original) in enumerate(zip(low_res, bicubic, originals)):
        enlarged = np.asarray(small, np.uint8).repeat(scale, axis=0).repeat(scale, axis=1)
        rows.append([enlarged, smooth, *[images[i] for images in samples], original])
    return rows


class CompletionImages(keras.callbacks.Callback):
    """Writes a completion grid of fixed images to TensorBoard at each epoch end ("images" tab).

    Each row: the given top rows, the model's completion (seed 0), the original. For a super-resolution model
    instead: the low-resolution input, bicubic upsampling, the model's sample (seed 0), the original. Decoding runs
    the cached decoder without XLA (no compilation during training). Needs the `tensorboard` package for
    `tf.summary.image`.

    Args:
        images: uint8 `[N, H, W, C]`, e.g. the first validation images.
        log_dir: TensorBoard directory (an `images` subdirectory is written).
        scale: integer upscaling of each image in the grid.
        labels: int `[N]`, the classes of `images`, for a class-conditional model.
    """

    def __init__(self, images, log_dir, scale=4, labels=None):
        super().__init__()
        self.images = np.asarray(images, np.uint8)
        self.labels = None if labels is None else np.asarray(labels, np.int64)
        self.scale = scale
        self._writer = tf.summary.create_file_writer(log_dir)

    def _rows(self):
        if not self.model.condition.completes_top_rows:  # super-resolution: whole images from low_res
            factor = self.model.scale
            low_res = resize.downsample(self.images, factor)
            samples = sampling.super_resolve(self.model, low_res, seed=0, jit_compile=False).numpy()
            bicubic = resize.bicubic(low_res, factor).numpy()
            return "super_resolution", super_resolution_rows(low_res.numpy(), bicubic, [samples], self.images, factor)
        known_rows = sampling.default_known_rows(self.model)
        completed = sampling.complete(self.model, self.images, known_rows, seed=0, jit_compile=False,
                                      labels=self.labels).numpy()
        return "completions", completion_rows(self.images, completed, self.images, known_rows)

    def on_epoch_end(self, epoch, logs=None):
        tag, rows = self._rows()
        grid = image_grid(rows, scale=self.scale)
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        # record_if(True): Keras' TensorBoard callback may leave a step-based recording condition in place.
        with self._writer.as_default(), tf.summary.record_if(True):
            tf.summary.image(tag, grid[None], step=step)
        self._writer.flush()

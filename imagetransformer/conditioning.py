"""Conditioning: what a model generates images given, beside their own earlier pixels, as one idea.

Every model has a `condition`, one of the objects below; sampling, evaluation, grids, the export and the programs
ask it instead of comparing names:

| `model.condition`            | input key   | value                         | task                |
|------------------------------|-------------|-------------------------------|---------------------|
| `Unconditional()`            | None        | none                          | `generation`        |
| `ClassLabel(num_classes)`    | `"labels"`  | int `[B]` in `0..num_classes-1` | `class_conditional` |
| `LowResImage(shape, scale)`  | `"low_res"` | uint8 `[B, h, w, C]`          | `super_resolution`  |

A conditional model takes `{"images": [B, H, W, C], <key>: value}` wherever an unconditional one takes images.
`from_examples(images, labels)` gives the condition of dataset examples (their labels; their downsampled
versions), so evaluation and completion need no special cases; a `LowResImage` model generates whole images from
the condition (`completes_top_rows` is False).
"""

import tensorflow as tf

from imagetransformer.data import resize


class Condition:
    """Base class. Subclasses set `key` and `task` and implement `check` and `spec`."""

    key = None            # the model input beside "images" (None: the model takes images alone)
    task = "generation"   # what the model is for, as presets and configurations name it
    needs_labels = False  # whether dataset examples must carry their class labels
    completes_top_rows = True  # False: images are generated whole given the condition (super-resolution)

    def check(self, value, images=None):
        """Raises a ValueError (TypeError for a wrong dtype) unless `value` suits the model; `images`: the batch it
        goes with (its size is checked where known). Values are checked when known (eagerly)."""
        raise NotImplementedError

    def spec(self, batch=None):
        """The `tf.TensorSpec` of the value (batch `None` unless given), or None."""
        raise NotImplementedError

    def from_examples(self, images, labels=None):
        """The condition of dataset examples: uint8 `images` `[B, H, W, C]` with their int `labels` `[B]`."""
        del images, labels

    def __repr__(self):
        return f"{type(self).__name__}()"


class Unconditional(Condition):
    """No condition: `p(image)`."""

    def check(self, value, images=None):
        if value is not None:
            raise ValueError("This model is unconditional: it takes images alone, no labels or low_res.")

    def spec(self, batch=None):
        return None


class ClassLabel(Condition):
    """The image's class: `p(image | class)` (a learned class embedding added at every position)."""

    key = "labels"
    task = "class_conditional"
    needs_labels = True

    def __init__(self, num_classes):
        self.num_classes = int(num_classes)

    def check(self, value, images=None):
        n = self.num_classes
        if value is None:
            raise ValueError(f"This model is class-conditional (num_classes={n}): pass labels, one int per image "
                             f"in 0..{n - 1}.")
        if not value.dtype.is_integer:
            raise TypeError(f"labels must be integers in 0..{n - 1}, got dtype {value.dtype.name}.")
        batch = None if images is None else images.shape[0]
        if value.shape.rank != 1 or (batch is not None and value.shape[0] is not None and value.shape[0] != batch):
            raise ValueError(f"labels must have shape [batch] (one label per image{f', batch {batch}' if batch else ''}"
                             f"), got {list(value.shape)}.")
        if tf.executing_eagerly():
            values = value.numpy()
            if values.size and (values.min() < 0 or values.max() >= n):
                raise ValueError(f"labels must be in 0..{n - 1} (num_classes={n}), got "
                                 f"{sorted(set(values[(values < 0) | (values >= n)].tolist()))}.")

    def spec(self, batch=None):
        return tf.TensorSpec([batch], tf.int64)

    def from_examples(self, images, labels=None):
        return labels

    def __repr__(self):
        return f"ClassLabel(num_classes={self.num_classes})"


class LowResImage(Condition):
    """The image downsampled by `scale` (area averaging, `data.resize.downsample`): `p(image | low_res)`."""

    key = "low_res"
    task = "super_resolution"
    completes_top_rows = False

    def __init__(self, low_res_shape, scale):
        self.low_res_shape = tuple(int(d) for d in low_res_shape)
        self.scale = int(scale)

    def check(self, value, images=None):
        expected = f"[batch, {', '.join(map(str, self.low_res_shape))}]"
        if value is None:
            raise ValueError(f"This SuperResolutionTransformer needs low_res: the low-resolution images {expected} "
                             f"(scale {self.scale}).")
        if not value.dtype.is_integer:
            raise TypeError(f"low_res must be an integer tensor with values 0..255, got dtype {value.dtype.name}.")
        shape = value.shape
        batch = None if images is None else images.shape[0]
        if (shape.rank != 4 or any(a is not None and a != b for a, b in zip(shape[1:], self.low_res_shape))
                or (batch is not None and shape[0] is not None and shape[0] != batch)):
            height, width = self.low_res_shape[0] * self.scale, self.low_res_shape[1] * self.scale
            raise ValueError(f"low_res must have shape {expected} (the images' {height}x{width} downsampled by scale "
                             f"{self.scale}{f', batch {batch}' if batch is not None else ''}), got {list(shape)}.")
        if tf.executing_eagerly() and value.dtype != tf.uint8:
            values = value.numpy()
            if values.size and (values.min() < 0 or values.max() > 255):
                raise ValueError(f"low_res values must be in 0..255, got {values.min()}..{values.max()}.")

    def spec(self, batch=None):
        return tf.TensorSpec([batch, *self.low_res_shape], tf.uint8)

    def from_examples(self, images, labels=None):
        return resize.downsample(images, self.scale)

    def __repr__(self):
        return f"LowResImage(low_res_shape={self.low_res_shape}, scale={self.scale})"

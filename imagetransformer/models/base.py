"""What every autoregressive image model of this project shares: exact likelihood, training loss, sampling hooks.

A subclass (`ImageTransformer`, `PixelCNNPlusPlus`) sets `image_shape`, `distribution`, `order` (a `PixelOrder`)
and `head` (a DMoL or categorical head), and implements `call(images)` -> head parameters in image layout and
`sequence_params(tokens)` -> head parameters in generation order. This base class then gives it

- `log_prob`, `bits_per_dim` (exact, via the head's tfp distribution);
- `compute_loss` for `model.fit(images)` without targets (nats per dimension; a `bits_per_dim` metric);
- the hooks `imagetransformer.generation.sampling` and the export use (`supports_cache`, `known_rows_multiple`);
- conditioning plumbing: a model's `condition` (`imagetransformer.conditioning`: `Unconditional`, `ClassLabel`,
  `LowResImage`) names and checks what it takes beside the images, `{"images": [B, H, W, C], <condition.key>:
  ...}` wherever an unconditional model takes images (`split_inputs`);
- training under `MultiWorkerMirroredStrategy` with `model.fit` (keras-team/keras issue 20585).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from imagetransformer import conditioning


class AutoregressiveImageModel(keras.Model):
    """Base class: likelihood, loss and multi-worker training of a model of `[B, H, W, C]` uint8 images.

    Subclasses must set `image_shape`, `distribution`, `order`, `head` and `bits_per_dim_tracker`
    (`keras.metrics.Mean(name="bits_per_dim")`) in `__init__`, and implement `call` and `sequence_params`.
    """

    # Whether `imagetransformer.generation.sampling` may use key/value caches (`hidden_states(..., cache_position=...)`,
    # `step`, `init_caches`, `begin_block`, `decode_period`, `prefill_length`). Without them it re-runs the whole
    # network once per generated position.
    supports_cache = False
    # What the model generates images given (`imagetransformer.conditioning`); subclasses set their own.
    condition = conditioning.Unconditional()
    # The number of classes of a class-conditional model (`condition` is then a `ClassLabel`).
    num_classes = None

    @classmethod
    def from_preset(cls, preset, compile=True):  # pylint: disable=redefined-builtin
        """The pretrained model `preset` (`imagetransformer.list_presets()`), which must be a `cls`.

        Raises:
            ValueError: an unknown preset, or one holding another kind of model.
        """
        from imagetransformer import presets  # pylint: disable=import-outside-toplevel,cyclic-import

        model = presets.from_preset(preset, compile=compile)
        if not isinstance(model, cls):
            raise presets.PresetError(f"Preset {preset!r} holds a model of class {type(model).__name__}, not {cls.__name__}; "
                                      f"load it with imagetransformer.from_preset({preset!r}).")
        return model

    @staticmethod
    def _validate_image_shape(image_shape):
        try:
            shape = tuple(int(d) for d in image_shape)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 3 or min(shape) < 1 or shape[2] not in (1, 3):
            raise ValueError(
                f"image_shape={image_shape!r} must be (height, width, channels) with channels 1 (grayscale) "
                "or 3 (RGB)."
            )
        return shape

    @property
    def num_dimensions(self):
        """Sub-pixels per image (H * W * C): the denominator of bits/dim."""
        return int(np.prod(self.image_shape))

    @property
    def known_rows_multiple(self):
        """Completion can start only after a multiple of this many rows (local_2d: the query block height)."""
        return 1

    @property
    def description(self):
        """One line naming the architecture, for logs."""
        return type(self).__name__

    def _check_images(self, images):
        shape = tuple(images.shape[1:])
        if images.shape.rank != 4 or any(a is not None and a != b for a, b in zip(shape, self.image_shape)):
            raise ValueError(
                f"Expected images of shape [batch, {', '.join(map(str, self.image_shape))}] (the model's "
                f"image_shape), got {list(images.shape)}."
            )

    def sequence_params(self, tokens, training=None, condition=None):
        """Head parameters `[B, length, P]` in generation order for tokens `[B, length, token]` (teacher forcing);
        `condition`: the `condition_key` input of a conditional model."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------------------------------------
    # Conditioning: `self.condition` (imagetransformer.conditioning) says what the model takes beside the images.
    # --------------------------------------------------------------------------------------------------------------
    @property
    def conditional(self):
        """Whether the model takes a condition beside the images (a class label or a low-resolution image)."""
        return self.condition.key is not None

    @property
    def condition_key(self):
        """The input that conditions the model beside `images` (`self.condition.key`): `"labels"`, `"low_res"` or
        None."""
        return self.condition.key

    def split_inputs(self, inputs):
        """`images` or `{"images": ..., <condition_key>: ...}` -> `(images, condition or None)`, checked against
        the model."""
        if isinstance(inputs, dict):
            extra = sorted(set(inputs) - {"images"})
            if "images" not in inputs or len(extra) > 1 or not set(extra) <= {"labels", "low_res"}:
                raise ValueError(f"Inputs must be images or a dict with 'images' and one of 'labels' or 'low_res', "
                                 f"got keys {sorted(inputs)}.")
            if extra and extra[0] != self.condition_key:
                if self.condition_key is None:
                    raise ValueError(f"This {type(self).__name__} is unconditional: it takes no {extra[0]!r}.")
                raise ValueError(f"This {type(self).__name__} takes {self.condition_key!r} beside the images, not "
                                 f"{extra[0]!r}.")
            images, condition = inputs["images"], inputs.get(self.condition_key)
        else:
            images, condition = inputs, None
        images = tf.convert_to_tensor(images)
        if condition is not None:
            condition = tf.convert_to_tensor(condition)
        self.condition.check(condition, images)
        return images, condition

    def input_spec_for_build(self):
        """The symbolic input of `fit`: a uint8 images spec, or the `{"images", "labels"}` dict of specs."""
        images = tf.TensorSpec([None, *self.image_shape], tf.uint8)
        if self.condition_key is None:
            return images
        return {"images": images, self.condition_key: self.condition.spec()}

    @property
    def _default_save_signature(self):
        """No Keras default serving signature: `export/export.py` defines this project's signatures, and Keras'
        default would call the model on float32 inputs (for a conditional model, float labels) when tracing."""
        return None

    # --------------------------------------------------------------------------------------------------------------
    # Likelihood.
    # --------------------------------------------------------------------------------------------------------------
    def _targets(self, images):
        """Images in the layout of `call`'s parameters: pixels `[B,H,W,C]` or sub-pixels `[B,H,W,C,1]`."""
        images = tf.cast(images, tf.int32)
        return images[..., None] if self.distribution == "categorical" else images

    def log_prob_from_params(self, params, images):
        """Per-image log-probability `[B]` (nats) of `images` given the parameters `call` returned for them."""
        per_position = self.head.log_prob(params, self._targets(images))
        return tf.reduce_sum(tf.reshape(per_position, [tf.shape(per_position)[0], -1]), axis=1)

    def log_prob(self, images, labels=None, *, low_res=None):
        """Exact log-probability (natural log) of each whole image: float32 `[B]`. Given its class (`labels`
        `[B]`) for a class-conditional model, its low-resolution version (`low_res` `[B, h, w, C]`) for a
        super-resolution model."""
        images = tf.convert_to_tensor(images)
        if not (images.dtype.is_integer or images.dtype.is_unsigned):
            raise TypeError(f"images must be an integer tensor with values 0..255, got dtype {images.dtype.name}.")
        inputs = {"images": images}
        for key, value in (("labels", labels), ("low_res", low_res)):
            if value is not None:
                inputs[key] = tf.convert_to_tensor(value)
        return self.log_prob_from_params(self(inputs if len(inputs) > 1 else images, training=False), images)

    def bits_per_dim(self, images, labels=None, *, low_res=None):
        """`-log_prob / (H * W * C * ln 2)`: float32 `[B]`."""
        return -self.log_prob(images, labels, low_res=low_res) / (self.num_dimensions * math.log(2.0))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Negative log-likelihood in nats per dimension, averaged over the batch; no targets needed.

        Updates the `bits_per_dim` metric. Like Keras' own losses under `tf.distribute`, the replica's mean is
        divided by the number of replicas, because gradients are summed across them.
        """
        del y, training
        images = x["images"] if isinstance(x, dict) else x
        nats_per_dim = -self.log_prob_from_params(y_pred, images) / self.num_dimensions  # [B]
        self.bits_per_dim_tracker.update_state(nats_per_dim / math.log(2.0), sample_weight=sample_weight)
        if sample_weight is None:
            loss = tf.reduce_mean(nats_per_dim)
        else:
            weights = tf.cast(tf.reshape(sample_weight, [-1]), nats_per_dim.dtype)
            loss = tf.math.divide_no_nan(tf.reduce_sum(nats_per_dim * weights), tf.reduce_sum(weights))
        loss /= tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype)
        if self.losses:
            loss += tf.add_n([tf.cast(extra, loss.dtype) for extra in self.losses])
        return loss

    # --------------------------------------------------------------------------------------------------------------
    # Multi-worker training (keras-team/keras issue 20585).
    # --------------------------------------------------------------------------------------------------------------
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Builds the training state from the model's own input spec instead of a reduced data batch.

        Keras' TensorFlow trainer takes the first batch of the distributed iterator and, under a strategy,
        reduces it across replicas (`strategy.reduce("MEAN", batch)`) only to learn its shape. Under
        `MultiWorkerMirroredStrategy` that is a cross-worker collective, which uint8 images cannot take
        (`CollectiveReduceV2` has no uint8 kernel), and it consumes a batch. The model knows its input
        (`[batch, H, W, C]` uint8, with `[batch]` labels if conditional), so the symbolic build needs no data.
        """
        del iterator, data_batch
        if self._distribute_strategy is None:
            return  # no strategy: Keras builds when the train function is traced
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=self.input_spec_for_build())

    def _in_multi_worker_mode(self):
        strategy = self.distribute_strategy
        return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access

    def _logs_for_reduction(self, logs):
        """Per-replica logs `[1]` instead of scalars under multi-worker training.

        Keras reduces the step's logs across workers with `strategy.reduce("MEAN", value, axis=0)`, which
        fails on scalars ("Invalid reduction dimension 0 for input with 0 dimensions"). Metric values are the
        same on every replica (their variables are synchronized), so their mean over a `[1]` axis is the value.
        """
        if not self._in_multi_worker_mode():
            return logs
        return tf.nest.map_structure(lambda value: tf.reshape(value, [1]), logs)

    def train_step(self, data):
        return self._logs_for_reduction(super().train_step(data))

    def test_step(self, data):
        return self._logs_for_reduction(super().test_step(data))

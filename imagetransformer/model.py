"""The Image Transformer (Parmar et al. 2018) as a Keras model.

```
images [B, H, W, C] uint8
  -> tokens in generation order                      [B, length, token]   (imagetransformer.ordering)
  -> PixelEmbedding (values shifted right + position) [B, length, hidden]
  -> num_layers x DecoderBlock (masked attention + FFN)
  -> LayerNormalization
  -> head parameters (float32)                        [B, length, P]
  -> image layout: dmol [B, H, W, P], categorical [B, H, W, C, 256]
```
`model(images)` returns the head parameters; `log_prob` / `bits_per_dim` turn them into exact likelihoods with
tfp distributions. `compile(optimizer=...)` then `fit(images)` minimizes the negative log-likelihood (nats per
dimension) with no targets, and reports bits/dim.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from imagetransformer.heads import CategoricalHead, DiscretizedLogisticMixtureHead
from imagetransformer.layers import (
    DecoderBlock,
    GlobalSelfAttention,
    LocalSelfAttention1D,
    LocalSelfAttention2D,
    PixelEmbedding,
)
from imagetransformer.ordering import DISTRIBUTIONS, PixelOrder

ATTENTIONS = ("local_1d", "local_2d", "global")


def _pair(value, name):
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"{name}={value!r} must be a pair of integers (rows, cols).")
    return pair


@keras.saving.register_keras_serializable(package="imagetransformer")
class ImageTransformer(keras.Model):
    """Autoregressive image model with local 1D/2D or global masked self-attention.

    Args:
        image_shape: `(H, W, C)` with C in {1, 3}.
        attention: `"local_1d"`, `"local_2d"` or `"global"`.
        num_layers: decoder blocks.
        hidden_size: model width; a multiple of `num_heads`.
        num_heads: attention heads.
        filter_size: feed-forward hidden units.
        dropout: dropout rate of the residual branches.
        block_length: local_1d query block length in positions; must divide the number of positions.
        memory_length: local_1d positions before each block that it also attends to.
        query_shape: local_2d query block `(rows, cols)` in grid positions; must divide the grid.
        memory_flange: local_2d memory `(rows above, cols on each side)` of a query block.
        distribution: `"dmol"` (one position per pixel) or `"categorical"` (one position per sub-pixel; the
            grid is `H x W*C`, which is what `block_length`, `query_shape` and `memory_flange` count in).
        num_mixtures: dmol mixture components.
        **kwargs: forwarded to `keras.Model` (`name`, `dtype`, ...).

    Example:
    >>> model = ImageTransformer(image_shape=(8, 8, 1), attention="local_1d", num_layers=1, hidden_size=16,
    ...                          num_heads=2, filter_size=32, block_length=16, memory_length=16, num_mixtures=2)
    >>> images = tf.zeros([2, 8, 8, 1], tf.uint8)
    >>> model.log_prob(images).shape
    TensorShape([2])
    """

    def __init__(
        self,
        image_shape=(32, 32, 3),
        attention="local_1d",
        num_layers=6,
        hidden_size=256,
        num_heads=8,
        filter_size=512,
        dropout=0.1,
        block_length=256,
        memory_length=256,
        query_shape=(8, 16),
        memory_flange=(8, 16),
        distribution="dmol",
        num_mixtures=10,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_shape = self._validate_image_shape(image_shape)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention={attention!r} is not supported; choose one of {', '.join(ATTENTIONS)}.")
        if distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"distribution={distribution!r} is not supported; choose one of {', '.join(DISTRIBUTIONS)}."
            )
        for name, value, minimum in (
            ("num_layers", num_layers, 1), ("hidden_size", hidden_size, 1), ("num_heads", num_heads, 1),
            ("filter_size", filter_size, 1), ("block_length", block_length, 1),
            ("memory_length", memory_length, 0), ("num_mixtures", num_mixtures, 1),
        ):
            if int(value) != value or value < minimum:
                raise ValueError(f"{name}={value!r} must be an integer >= {minimum}.")
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size={hidden_size} must be a multiple of num_heads={num_heads} (each head gets "
                "hidden_size / num_heads channels)."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} must be in [0, 1).")
        self.attention_type = attention
        self.num_layers = int(num_layers)
        self.hidden_size = int(hidden_size)
        self.num_heads = int(num_heads)
        self.filter_size = int(filter_size)
        self.dropout = float(dropout)
        self.block_length = int(block_length)
        self.memory_length = int(memory_length)
        self.query_shape = _pair(query_shape, "query_shape")
        self.memory_flange = _pair(memory_flange, "memory_flange")
        if min(self.query_shape) < 1 or min(self.memory_flange) < 0:
            raise ValueError(
                f"query_shape={self.query_shape} must be positive and memory_flange={self.memory_flange} "
                "non-negative."
            )
        self.distribution = distribution
        self.num_mixtures = int(num_mixtures)

        subpixels = distribution == "categorical"
        self.order = PixelOrder(self.image_shape, subpixels, self.query_shape if attention == "local_2d" else None)
        if attention == "local_1d" and self.order.length % self.block_length:
            raise ValueError(
                f"block_length={self.block_length} must divide the number of positions {self.order.length} "
                f"({'H*W*C' if subpixels else 'H*W'} for image_shape={self.image_shape}); choose a divisor."
            )

        self.embedding = PixelEmbedding(
            self.image_shape, self.hidden_size, subpixels, self.order.query_shape, name="embedding"
        )
        self.decoder_blocks = [
            DecoderBlock(self._make_attention(i), self.filter_size, self.dropout, name=f"decoder_block_{i}")
            for i in range(self.num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")
        if subpixels:
            self.head = CategoricalHead(name="head")
        else:
            self.head = DiscretizedLogisticMixtureHead(self.num_mixtures, self.image_shape[-1], name="head")
        self.bits_per_dim_tracker = keras.metrics.Mean(name="bits_per_dim")
        self.build((None, *self.image_shape))

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

    def _make_attention(self, index):
        name = f"attention_{index}"
        if self.attention_type == "global":
            return GlobalSelfAttention(self.num_heads, name=name)
        if self.attention_type == "local_1d":
            return LocalSelfAttention1D(self.num_heads, self.block_length, self.memory_length, name=name)
        return LocalSelfAttention2D(
            self.num_heads, self.order.grid_shape, self.query_shape, self.memory_flange, name=name
        )

    # --------------------------------------------------------------------------------------------------------------
    # Shapes and building.
    # --------------------------------------------------------------------------------------------------------------
    @property
    def num_dimensions(self):
        """Sub-pixels per image (H * W * C): the denominator of bits/dim."""
        return int(np.prod(self.image_shape))

    def build(self, input_shape=None):
        sequence_shape = (None, self.order.length, self.hidden_size)
        self.embedding.build((None, self.order.length, self.order.token_size))
        for block in self.decoder_blocks:
            block.build(sequence_shape)
        self.final_norm.build(sequence_shape)
        self.head.build(sequence_shape)
        self.built = True

    def _check_images(self, images):
        shape = tuple(images.shape[1:])
        if images.shape.rank != 4 or any(a is not None and a != b for a, b in zip(shape, self.image_shape)):
            raise ValueError(
                f"Expected images of shape [batch, {', '.join(map(str, self.image_shape))}] (the model's "
                f"image_shape), got {list(images.shape)}."
            )

    # --------------------------------------------------------------------------------------------------------------
    # Forward passes.
    # --------------------------------------------------------------------------------------------------------------
    def prefill_length(self, known_length):
        """Positions the prefill of `known_length` given positions runs over: whole attention blocks."""
        unit = self.decoder_blocks[0].attention.prefix_unit
        return min(self.order.length, -(-int(known_length) // unit) * unit)

    def hidden_states(self, tokens, training=None, cache_position=None):
        """Tokens `[B, length, token]` in generation order -> final hidden states `[B, length, hidden]`.

        `tokens` may also be a prefix of the sequence, `prefill_length(n)` positions long.

        With `cache_position` also returns every layer's key/value cache as a step at that position expects
        it (the prefill of cached decoding).
        """
        x = self.embedding(tokens)
        caches = []
        for block in self.decoder_blocks:
            x = block(x, training=training, cache_position=cache_position)
            if cache_position is not None:
                x, cache = x
                caches.append(cache)
        x = self.final_norm(x)
        return x if cache_position is None else (x, caches)

    def call(self, images, training=None):
        """Head parameters for every position: dmol `[B, H, W, P]`, categorical `[B, H, W, C, 256]` (float32)."""
        images = tf.convert_to_tensor(images)
        self._check_images(images)
        tokens = self.order.to_sequence(tf.cast(images, tf.int32))
        params = self.head(self.hidden_states(tokens, training=training))  # [B, length, P]
        return self.order.from_sequence(params)

    def step(self, previous_token, caches, position):
        """One cached generation step: head parameters `[B, P]` of `position` and the updated caches."""
        x = self.embedding.step(previous_token, position)
        new_caches = []
        for block, cache in zip(self.decoder_blocks, caches):
            x, cache = block.step(x, cache, position)
            new_caches.append(cache)
        return self.head(self.final_norm(x))[:, 0], new_caches

    @property
    def decode_period(self):
        """Positions per query block whose attention window the decoder must cut anew (`begin_block`)."""
        return self.decoder_blocks[0].attention.decode_period or self.order.length

    def begin_block(self, caches, position):
        """Caches with every layer's window moved to the query block that starts at `position`."""
        return [block.attention.begin_block(cache, position) for block, cache in zip(self.decoder_blocks, caches)]

    def init_caches(self, batch_size):
        """Empty per-layer key/value caches for `batch_size` images."""
        return [block.attention.init_cache(batch_size, self.compute_dtype) for block in self.decoder_blocks]

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

    def log_prob(self, images):
        """Exact log-probability (natural log) of each whole image: float32 `[B]`."""
        images = tf.convert_to_tensor(images)
        if not (images.dtype.is_integer or images.dtype.is_unsigned):
            raise TypeError(f"images must be an integer tensor with values 0..255, got dtype {images.dtype.name}.")
        return self.log_prob_from_params(self(images, training=False), images)

    def bits_per_dim(self, images):
        """`-log_prob / (H * W * C * ln 2)`: float32 `[B]`."""
        return -self.log_prob(images) / (self.num_dimensions * math.log(2.0))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Negative log-likelihood in nats per dimension, averaged over the batch; no targets needed.

        Updates the `bits_per_dim` metric. Like Keras' own losses under `tf.distribute`, the replica's mean is
        divided by the number of replicas, because gradients are summed across them.
        """
        del y, training
        nats_per_dim = -self.log_prob_from_params(y_pred, x) / self.num_dimensions  # [B]
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
        (`[batch, H, W, C]` uint8), so the symbolic build needs no data.
        """
        del iterator, data_batch
        if self._distribute_strategy is None:
            return  # no strategy: Keras builds when the train function is traced
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=tf.TensorSpec([None, *self.image_shape], tf.uint8))

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

    def get_config(self):
        config = super().get_config()
        config.update(
            image_shape=self.image_shape, attention=self.attention_type, num_layers=self.num_layers,
            hidden_size=self.hidden_size, num_heads=self.num_heads, filter_size=self.filter_size,
            dropout=self.dropout, block_length=self.block_length, memory_length=self.memory_length,
            query_shape=self.query_shape, memory_flange=self.memory_flange, distribution=self.distribution,
            num_mixtures=self.num_mixtures,
        )
        return config

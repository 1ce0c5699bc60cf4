"""Pixel embedding: value embeddings, the shift by one position, and a 2D position signal."""

import math

import keras
import numpy as np
import tensorflow as tf

from imagetransformer.ordering import PixelOrder


def timing_signal_2d(rows, cols, depth, max_timescale=1.0e4):
    """Sinusoidal signal for 2D coordinates (Vaswani et al.; `add_timing_signal_nd` in tensor2tensor).

    Half of the channels encode the row and half the column, each as sines then cosines of geometrically spaced
    frequencies.

    Args:
        rows, cols: int arrays of shape [N].
        depth: channels of the signal.

    Returns:
        float32 array [N, depth] (trailing channels are zero when `depth` is not a multiple of 4).
    """
    per_dim = depth // 4  # sin and cos for each of the 2 coordinates
    signal = np.zeros((len(rows), depth), np.float32)
    if per_dim == 0:
        return signal
    log_increment = math.log(max_timescale) / max(per_dim - 1, 1)
    inv_timescales = np.exp(-log_increment * np.arange(per_dim, dtype=np.float64))
    for i, coordinate in enumerate((rows, cols)):
        scaled = coordinate[:, None].astype(np.float64) * inv_timescales[None, :]
        start = 2 * per_dim * i
        signal[:, start : start + per_dim] = np.sin(scaled)
        signal[:, start + per_dim : start + 2 * per_dim] = np.cos(scaled)
    return signal


@keras.saving.register_keras_serializable(package="imagetransformer")
class PixelEmbedding(keras.layers.Layer):
    """Embeds image tokens in generation order, shifted right by one position.

    The input at position `p` carries the value of position `p - 1` (a learned start vector at `p = 0`), plus a
    signal that says *which* position is being predicted: the 2D sinusoid of its pixel row and column and, when
    each sub-pixel is its own position (categorical head), a learned embedding of its channel.

    Each channel has its own table of 256 value embeddings. A pixel token (dmol head) is the sum of its channels'
    embeddings, which is as expressive as concatenating them and projecting (a table followed by a linear map is
    another table).

    Args:
        image_shape: `(H, W, C)`.
        hidden_size: embedding size.
        subpixels: one position per sub-pixel (True, categorical head) or per pixel (False, dmol head).
        query_shape: query block `(rows, cols)` for block-raster order (local 2D attention), else `None`.
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `call(tokens)`: int tokens `[batch, length, token_size]` -> `[batch, length, hidden_size]` (or a prefix
        of the sequence: `[batch, prefix, ...]`).
        `step(previous_token, position)`: `[batch, token_size]`, scalar -> `[batch, 1, hidden_size]`.

    Example:
    >>> layer = PixelEmbedding(image_shape=(8, 8, 3), hidden_size=16, subpixels=False)
    >>> layer(tf.zeros([2, 64, 3], tf.int32)).shape
    TensorShape([2, 64, 16])
    """

    def __init__(self, image_shape, hidden_size, subpixels, query_shape=None, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(image_shape)
        self.hidden_size = int(hidden_size)
        self.subpixels = bool(subpixels)
        self.query_shape = None if query_shape is None else tuple(query_shape)
        self.order = PixelOrder(self.image_shape, self.subpixels, self.query_shape)
        channels = self.image_shape[-1]
        self.value_embedding = keras.layers.Embedding(
            256 * channels, self.hidden_size, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="value_embedding",
        )
        rows, cols, pixel_channels = self.order.pixel_coordinates()
        # Offsets into the value table, per position (sub-pixels) or per token entry (pixels).
        if self.subpixels:
            self._offsets = (256 * pixel_channels)[:, None].astype(np.int32)  # [length, 1]
        else:
            self._offsets = (256 * np.arange(channels, dtype=np.int32))[None, :]  # [1, C]
        self._position_channels = pixel_channels.astype(np.int32)
        self._timing = timing_signal_2d(rows, cols, self.hidden_size)  # [length, hidden]

    def build(self, input_shape=None):
        self.value_embedding.build((None,))
        self.start = self.add_weight(
            name="start", shape=(self.hidden_size,), initializer=keras.initializers.RandomNormal(stddev=1.0)
        )
        if self.subpixels:
            self.channel_embedding = self.add_weight(
                name="channel_embedding", shape=(self.image_shape[-1], self.hidden_size),
                initializer=keras.initializers.RandomNormal(stddev=1.0),
            )

    def _position_signal(self, positions=slice(None)):
        """What identifies the positions being predicted (`positions`: a slice, or one position as a scalar).

        Returns `[positions, hidden]`, or `[hidden]` for one position.
        """
        signal = tf.constant(self._timing, dtype=self.compute_dtype)[positions]
        if self.subpixels:
            channels = tf.constant(self._position_channels)[positions]
            signal += tf.gather(tf.cast(self.channel_embedding, self.compute_dtype), channels)
        return signal

    def call(self, tokens):
        tokens = tf.cast(tokens, tf.int32)
        offsets = self._offsets[: tokens.shape[1]] if self.subpixels else self._offsets
        values = self.value_embedding(tokens + offsets)  # [batch, length, token_size, hidden]
        values = tf.reduce_sum(values, axis=2)  # [batch, length, hidden]
        batch = tf.shape(values)[0]
        start = tf.tile(tf.cast(self.start, values.dtype)[None, None, :], [batch, 1, 1])
        shifted = tf.concat([start, values[:, :-1]], axis=1)  # input at p is the value at p - 1
        return shifted + self._position_signal(slice(tokens.shape[1]))[None]  # tokens may be a prefix

    def step(self, previous_token, position):
        """The input vector of one position, given the token generated at `position - 1`.

        Args:
            previous_token: int `[batch, token_size]`, the token at `position - 1` (ignored at position 0).
            position: scalar int, the generation step.
        """
        previous = tf.maximum(position - 1, 0)
        offsets = tf.constant(self._offsets)
        offsets = offsets[previous] if self.subpixels else offsets[0]
        values = tf.reduce_sum(self.value_embedding(tf.cast(previous_token, tf.int32) + offsets), axis=1)
        start = tf.cast(self.start, values.dtype)[None, :]
        values = tf.where(position > 0, values, start)  # [batch, hidden]
        signal = self._position_signal(position)  # only this position's row
        return (values + signal)[:, None, :]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], self.hidden_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            image_shape=self.image_shape, hidden_size=self.hidden_size, subpixels=self.subpixels,
            query_shape=self.query_shape,
        )
        return config

"""Pixel embedding: value embeddings, the shift by one position, and a 2D position signal."""

VALUE_EMBEDDINGS = ("table", "projection")
STARTS = ("learned", "zeros")

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

    How a value becomes a vector (`value_embedding`):

    - `"table"`: each channel has its own table of 256 learned embeddings. A pixel token (dmol head) is the sum
      of its channels' embeddings, which is as expressive as concatenating them and projecting (a table followed
      by a linear map is another table).
    - `"projection"`: `relu(W v + b)` of the values scaled to [-1, 1] (a 1x1 convolution of the image): nearby
      intensities start with nearby embeddings, which a table has to learn value by value. With one position per
      sub-pixel, `v` holds the sub-pixel's value in its channel's slot and zeros elsewhere.

    Args:
        image_shape: `(H, W, C)`.
        hidden_size: embedding size.
        subpixels: one position per sub-pixel (True, categorical head) or per pixel (False, dmol head).
        query_shape: query block `(rows, cols)` for block-raster order (local 2D attention), else `None`.
        value_embedding: `"table"` or `"projection"` (above).
        start: the input of position 0, which has no previous value: `"learned"` (a trained vector) or
            `"zeros"`.
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

    def __init__(self, image_shape, hidden_size, subpixels, query_shape=None, value_embedding="table",
                 start="learned", **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(image_shape)
        self.hidden_size = int(hidden_size)
        self.subpixels = bool(subpixels)
        self.query_shape = None if query_shape is None else tuple(query_shape)
        if value_embedding not in VALUE_EMBEDDINGS:
            raise ValueError(f"value_embedding={value_embedding!r} is not supported; choose one of "
                             f"{', '.join(VALUE_EMBEDDINGS)}.")
        if start not in STARTS:
            raise ValueError(f"start={start!r} is not supported; choose one of {', '.join(STARTS)}.")
        self.value_embedding_type = value_embedding
        self.start_type = start
        self.order = PixelOrder(self.image_shape, self.subpixels, self.query_shape)
        channels = self.image_shape[-1]
        if value_embedding == "table":
            self.value_embedding = keras.layers.Embedding(
                256 * channels, self.hidden_size,
                embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0), name="value_embedding",
            )
        else:
            self.value_embedding = keras.layers.Dense(self.hidden_size, activation="relu", name="value_projection")
        rows, cols, pixel_channels = self.order.pixel_coordinates()
        # The table holds 256 rows per channel: a pixel token's C values index rows 256 c + value.
        self._pixel_offsets = 256 * np.arange(channels, dtype=np.int32)  # [C]
        self._position_channels = pixel_channels.astype(np.int32)
        self._timing = timing_signal_2d(rows, cols, self.hidden_size)  # [length, hidden]

    def build(self, input_shape=None):
        if self.value_embedding_type == "table":
            self.value_embedding.build((None,))
        else:
            self.value_embedding.build((None, self.image_shape[-1]))
        self.start = None
        if self.start_type == "learned":
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

    def embed_values(self, tokens, channels):
        """Value embeddings of int `tokens` `[..., token_size]` -> `[..., hidden]` (not shifted).

        `channels`: int `[...]`, the channel of each sub-pixel (used only with `subpixels`).
        """
        tokens = tf.cast(tokens, tf.int32)
        if self.value_embedding_type == "table":
            offsets = 256 * channels[..., None] if self.subpixels else tf.constant(self._pixel_offsets)
            return tf.reduce_sum(self.value_embedding(tokens + offsets), axis=-2)  # sum over the token's values
        scaled = tf.cast(tokens, self.compute_dtype) / 127.5 - 1.0  # [..., token_size] in [-1, 1]
        if self.subpixels:  # the value in its channel's slot: [..., C]
            scaled = scaled * tf.one_hot(channels, self.image_shape[-1], dtype=scaled.dtype)
        return self.value_embedding(scaled)

    def _start(self, batch, dtype):
        """The input of position 0, `[batch, hidden]`."""
        if self.start is None:
            return tf.zeros([batch, self.hidden_size], dtype)
        return tf.tile(tf.cast(self.start, dtype)[None, :], [batch, 1])

    def call(self, tokens):
        length = tokens.shape[1]  # tokens may be a prefix
        values = self.embed_values(tokens, tf.constant(self._position_channels[:length])[None])  # [B, len, hidden]
        start = self._start(tf.shape(values)[0], values.dtype)[:, None, :]
        shifted = tf.concat([start, values[:, :-1]], axis=1)  # input at p is the value at p - 1
        return shifted + self._position_signal(slice(length))[None]

    def step(self, previous_token, position):
        """The input vector of one position, given the token generated at `position - 1`.

        Args:
            previous_token: int `[batch, token_size]`, the token at `position - 1` (ignored at position 0).
            position: scalar int, the generation step.
        """
        previous = tf.maximum(position - 1, 0)
        channels = tf.fill(tf.shape(previous_token)[:1], tf.constant(self._position_channels)[previous])  # [batch]
        values = self.embed_values(previous_token, channels)  # [batch, hidden]
        values = tf.where(position > 0, values, self._start(tf.shape(values)[0], values.dtype))
        signal = self._position_signal(position)  # only this position's row
        return (values + signal)[:, None, :]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], self.hidden_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            image_shape=self.image_shape, hidden_size=self.hidden_size, subpixels=self.subpixels,
            query_shape=self.query_shape, value_embedding=self.value_embedding_type, start=self.start_type,
        )
        return config

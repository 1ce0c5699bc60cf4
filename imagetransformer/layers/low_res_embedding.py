"""Embedding of a low-resolution conditioning image for the super-resolution encoder."""

import keras
import numpy as np
import tensorflow as tf

from imagetransformer.layers.embedding import timing_signal_2d


@keras.saving.register_keras_serializable(package="imagetransformer")
class LowResEmbedding(keras.layers.Layer):
    """Embeds every pixel of a small image: its channels' value embeddings plus the 2D position signal.

    Unlike `PixelEmbedding` nothing is shifted: the encoder sees the whole low-resolution image at once. Each
    channel has its own table of 256 value embeddings, summed over the channels of a pixel. The position signal is
    the decoder's 2D sinusoid, taken at the centre of the `scale x scale` block of full-resolution pixels that the
    low-resolution pixel covers: a decoder query and the encoder key of the same place then carry the same
    position features, so cross-attention can find "the low-resolution pixel above me" without learning a map
    between two grids.

    Args:
        low_res_shape: `(h, w, C)` of the low-resolution images.
        hidden_size: embedding size.
        scale: full-resolution pixels per low-resolution pixel along each axis (positions are measured in
            full-resolution pixels; 1 measures them on the low-resolution grid).
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `call(low_res)`: integer `[batch, h, w, C]` (values 0..255) -> `[batch, h * w, hidden_size]` (raster order).

    Example:
    >>> layer = LowResEmbedding(low_res_shape=(7, 7, 1), hidden_size=16, scale=4)
    >>> layer(tf.zeros([2, 7, 7, 1], tf.uint8)).shape
    TensorShape([2, 49, 16])
    """

    def __init__(self, low_res_shape, hidden_size, scale=1, **kwargs):
        super().__init__(**kwargs)
        self.low_res_shape = tuple(int(d) for d in low_res_shape)
        self.hidden_size = int(hidden_size)
        self.scale = int(scale)
        height, width, channels = self.low_res_shape
        self.value_embedding = keras.layers.Embedding(
            256 * channels, self.hidden_size, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="value_embedding",
        )
        self._offsets = (256 * np.arange(channels, dtype=np.int32))[None, None, :]  # [1, 1, C]
        rows, cols = np.divmod(np.arange(height * width), width)
        centre = (self.scale - 1) / 2.0  # of a scale x scale block, in full-resolution pixels
        self._timing = timing_signal_2d(rows * self.scale + centre, cols * self.scale + centre,
                                        self.hidden_size)  # [h * w, hidden]

    def build(self, input_shape=None):
        self.value_embedding.build((None,))

    def call(self, low_res):
        height, width, channels = self.low_res_shape
        pixels = tf.reshape(tf.cast(low_res, tf.int32), [-1, height * width, channels])  # [batch, h*w, C]
        values = tf.reduce_sum(self.value_embedding(pixels + self._offsets), axis=2)  # [batch, h*w, hidden]
        return values + tf.constant(self._timing, dtype=values.dtype)[None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.low_res_shape[0] * self.low_res_shape[1], self.hidden_size)

    def get_config(self):
        config = super().get_config()
        config.update(low_res_shape=self.low_res_shape, hidden_size=self.hidden_size, scale=self.scale)
        return config

"""Global (full causal) self-attention: every position sees itself and every earlier position.

Time and memory grow with the square of the number of positions; use it for small images and as the reference
the local variants are tested against.
"""

import keras
import numpy as np
import tensorflow as tf

from imagetransformer.layers.attention import MaskedSelfAttention


@keras.saving.register_keras_serializable(package="imagetransformer")
class GlobalSelfAttention(MaskedSelfAttention):
    """Multi-head causal self-attention over the whole sequence.

    Args:
        num_heads: number of heads; the input size must be a multiple of it.
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `call(x)`: `[batch, length, hidden]` -> `[batch, length, hidden]`.
        Cache: keys and values `[batch, heads, length, depth]`; the window is the whole sequence, slot =
        generation index.

    Example:
    >>> layer = GlobalSelfAttention(num_heads=2)
    >>> layer(tf.zeros([1, 16, 8])).shape
    TensorShape([1, 16, 8])
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.length = int(input_shape[1])

    def _attend_sequence(self, q, k, v):
        length = q.shape[2]
        causal = np.tril(np.ones([length, length], bool))  # [query, key]
        # One block holding the whole sequence: [batch, heads, 1, length, depth].
        out = self._attend(q[:, :, None], k[:, :, None], v[:, :, None], self._bias(causal))
        return out[:, :, 0]

    def init_cache(self, batch_size, dtype):
        shape = [batch_size, self.num_heads, self.length, self.depth]
        return {"keys": tf.zeros(shape, dtype), "values": tf.zeros(shape, dtype)}

    def cache_from_sequence(self, k, v, position):
        del position

        def layout(x):  # [batch, heads, prefix, depth] -> [batch, heads, length, depth]
            return tf.pad(x, [[0, 0], [0, 0], [0, self.length - x.shape[2]], [0, 0]])

        return {"keys": layout(k), "values": layout(v)}

    def _write(self, cache, k, v, position):
        return {"keys": self._write_slot(cache["keys"], k, position),
                "values": self._write_slot(cache["values"], v, position)}

    def _window_mask(self, position):
        return tf.range(self.length) <= position

"""Multi-head attention from a sequence to an encoder's output, with the output's keys and values computed apart."""

import keras
import tensorflow as tf

from imagetransformer.layers.attention import dot_product_attention


@keras.saving.register_keras_serializable(package="imagetransformer")
class CrossAttention(keras.layers.Layer):
    """Unmasked multi-head attention of queries `x` over a fixed `memory` (an encoder's output).

    The same parameters and numbers as `keras.layers.MultiHeadAttention(num_heads, hidden // num_heads)` called as
    `mha(x, memory)` (projections with biases, queries scaled by `depth ** -0.5`, no dropout), but the memory's
    keys and values are a separate step, `memory_keys_values(memory)`: a decoder generating one position at a time
    projects the memory once per image and then, per position, only projects its query. Keras' layer would
    re-project the whole memory at every generated position.

    Args:
        num_heads: attention heads; the width must be a multiple of it.
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `memory_keys_values(memory)`: `[batch, memory_len, hidden]` -> `{"keys", "values"}`, each
        `[batch, heads, memory_len, depth]`.
        `call(x, keys_values)`: `[batch, length, hidden]` -> `[batch, length, hidden]`.

    Example:
    >>> layer = CrossAttention(num_heads=2)
    >>> layer.build((None, None, 8))
    >>> memory = layer.memory_keys_values(tf.zeros([1, 49, 8]))
    >>> layer(tf.zeros([1, 16, 8]), memory).shape
    TensorShape([1, 16, 8])
    """

    def __init__(self, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)

    def build(self, input_shape, memory_shape=None):
        hidden_size = input_shape[-1]
        if hidden_size % self.num_heads:
            raise ValueError(f"hidden size {hidden_size} must be a multiple of num_heads={self.num_heads}.")
        self.depth = hidden_size // self.num_heads

        def projection(name):  # [batch, time, hidden] -> [batch, time, heads, depth] (Keras' layout and biases)
            layer = keras.layers.EinsumDense("btd,dhk->bthk", output_shape=(None, self.num_heads, self.depth),
                                             bias_axes="hk", name=name, dtype=self.dtype_policy)
            layer.build(input_shape)
            return layer

        self.query_dense = projection("query_dense")
        self.key_dense = projection("key_dense")
        self.value_dense = projection("value_dense")
        self.output_dense = keras.layers.EinsumDense(
            "bhtk,hkd->btd", output_shape=(None, hidden_size), bias_axes="d", name="output_dense",
            dtype=self.dtype_policy,
        )
        self.output_dense.build((None, self.num_heads, None, self.depth))

    @staticmethod
    def _heads_major(x):
        return tf.transpose(x, [0, 2, 1, 3])  # [batch, time, heads, depth] -> [batch, heads, time, depth]

    def memory_keys_values(self, memory):
        """Keys and values `[batch, heads, memory_len, depth]` of `memory` `[batch, memory_len, hidden]`."""
        return {"keys": self._heads_major(self.key_dense(memory)),
                "values": self._heads_major(self.value_dense(memory))}

    def call(self, x, keys_values):
        """`x` `[batch, length, hidden]` attending to `keys_values` (from `memory_keys_values`)."""
        q = self._heads_major(self.query_dense(x)) * tf.cast(self.depth**-0.5, x.dtype)  # [batch, heads, length, depth]
        no_mask = tf.zeros([], q.dtype)
        out = dot_product_attention(q, keys_values["keys"], keys_values["values"], no_mask)
        return self.output_dense(out)  # [batch, length, hidden]

    def compute_output_shape(self, input_shape, keys_values_shape=None):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads)
        return config

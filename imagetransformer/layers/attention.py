"""Masked multi-head self-attention over a sequence in generation order: the part every variant shares.

A variant (global, local 1D, local 2D) decides *which* earlier positions each query sees. It does so twice, in
the two ways the model runs:

- teacher-forced (`call`): all positions at once, queries grouped in blocks that share one memory
  (`_attend_sequence`);
- step by step (`step`): one new position per call against a key/value cache (`init_cache`,
  `cache_from_sequence`, `_write_cache`, `_window`). The cache's layout is the variant's own, chosen so that a
  step reads its window with one `tf.slice` and writes one slot, never copying the history.

Both paths share the projections and `_attend`, so a cached step computes the same numbers as the
teacher-forced pass (tests check it).
"""

import keras
import tensorflow as tf


class MaskedSelfAttention(keras.layers.Layer):
    """Base class: fused query/key/value projection, masked softmax attention, output projection.

    Args:
        num_heads: number of attention heads; the input size must be a multiple of it.
        **kwargs: forwarded to `keras.layers.Layer`.
    """

    def __init__(self, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.softmax = keras.layers.Softmax(axis=-1, dtype=self.dtype_policy)

    def build(self, input_shape):
        hidden_size = input_shape[-1]
        if hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={hidden_size} must be a multiple of num_heads={self.num_heads}."
            )
        self.depth = hidden_size // self.num_heads
        # One matmul for queries, keys and values: [batch, time, 3, heads, depth].
        self.qkv = keras.layers.EinsumDense(
            "btd,dnhk->btnhk", output_shape=(None, 3, self.num_heads, self.depth), name="qkv",
            kernel_initializer="glorot_uniform", dtype=self.dtype_policy,
        )
        self.qkv.build(input_shape)
        self.output_dense = keras.layers.EinsumDense(
            "bthk,hkd->btd", output_shape=(None, hidden_size), name="output", dtype=self.dtype_policy,
        )
        self.output_dense.build((None, None, self.num_heads, self.depth))

    # ----------------------------------------------------------------------------------------------------------
    # Shared pieces.
    # ----------------------------------------------------------------------------------------------------------
    def _project(self, x):
        """`[batch, time, hidden]` -> queries (pre-scaled), keys, values, each `[batch, time, heads, depth]`."""
        qkv = self.qkv(x)
        q, k, v = tf.unstack(qkv, 3, axis=2)
        return q * tf.cast(self.depth**-0.5, q.dtype), k, v

    def _attend(self, q, k, v, mask):
        """Attention of query blocks over their memories.

        Args:
            q: `[batch, blocks, query_len, heads, depth]`.
            k, v: `[batch, blocks, memory_len, heads, depth]`.
            mask: bool, broadcastable to `[batch, heads, blocks, query_len, memory_len]`; True = may attend.

        Returns:
            `[batch, blocks, query_len, heads, depth]`.
        """
        logits = tf.einsum("bnqhd,bnmhd->bhnqm", q, k)  # [batch, heads, blocks, query_len, memory_len]
        weights = self.softmax(logits, mask=mask)
        return tf.einsum("bhnqm,bnmhd->bnqhd", weights, v)

    def call(self, x, return_cache=False):
        """Teacher-forced attention. `x`: `[batch, length, hidden]` in generation order.

        With `return_cache=True` also returns the key/value cache holding every position (the prefill of
        cached decoding; entries past the known prefix are overwritten by later steps before they are read).
        """
        q, k, v = self._project(x)
        out = self._attend_sequence(q, k, v)  # [batch, length, heads, depth]
        y = self.output_dense(out)
        if return_cache:
            return y, self.cache_from_sequence(k, v)
        return y

    def step(self, x, cache, position):
        """One generation step.

        Args:
            x: `[batch, 1, hidden]`, the layer input at `position`.
            cache: dict of `keys`/`values` tensors in the variant's layout.
            position: scalar int32, the generation index of `x`.

        Returns:
            `([batch, 1, hidden], updated cache)`.
        """
        q, k, v = self._project(x)
        cache = {
            "keys": self._write_cache(cache["keys"], k[:, 0], position),
            "values": self._write_cache(cache["values"], v[:, 0], position),
        }
        keys, mask = self._window(cache["keys"], position)  # [window, batch, heads, depth], [window]
        values, _ = self._window(cache["values"], position)
        logits = tf.einsum("bqhd,wbhd->bhqw", q, keys)  # [batch, heads, 1, window]
        weights = self.softmax(logits, mask=mask)
        out = tf.einsum("bhqw,wbhd->bqhd", weights, values)
        return self.output_dense(out), cache

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads)
        return config

    # ----------------------------------------------------------------------------------------------------------
    # What a variant defines.
    # ----------------------------------------------------------------------------------------------------------
    def _attend_sequence(self, q, k, v):
        """q, k, v: `[batch, length, heads, depth]` -> `[batch, length, heads, depth]`."""
        raise NotImplementedError

    def init_cache(self, batch_size, dtype):
        """An empty cache (all zeros) for `batch_size` images."""
        raise NotImplementedError

    def cache_from_sequence(self, k, v):
        """Cache holding keys/values `[batch, length, heads, depth]` of every position."""
        raise NotImplementedError

    def _write_cache(self, cache, kv, position):
        """Writes `kv` `[batch, heads, depth]` into the slot of `position`."""
        raise NotImplementedError

    def _window(self, cache, position):
        """The memory of `position`: `([window, batch, heads, depth], bool mask [window])`."""
        raise NotImplementedError

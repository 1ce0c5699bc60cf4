"""Masked multi-head self-attention over a sequence in generation order: the part every variant shares.

A variant (global, local 1D, local 2D) decides *which* earlier positions each query sees. It does so twice, in
the two ways the model runs:

- teacher-forced (`call`): all positions at once, queries grouped in blocks that share one memory
  (`_attend_sequence`);
- step by step (`step`): one new position per call against a key/value cache. The cache is the *window*:
  keys and values `[batch, heads, window, depth]` of exactly the positions the current query block may see,
  which a step reads in place (no slicing or copying per step) after writing its own key and value into one
  slot. A variant says where a position's slot is (`_write`), which slots the position may see
  (`_window_mask`), and, if its window jumps between query blocks, how to cut the next block's window
  (`begin_block`, called by the decoder once per block, outside the per-position step); it builds the first
  window from a teacher-forced prefill (`cache_from_sequence`).

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

    # Teacher-forced calls also accept a prefix of the sequence whose length is a multiple of this (the prefill
    # of cached decoding runs only over the known positions).
    prefix_unit = 1

    def call(self, x, cache_position=None):
        """Teacher-forced attention. `x`: `[batch, length, hidden]` in generation order (or a prefix of it, a
        multiple of `prefix_unit` positions long).

        With `cache_position` (a scalar) also returns the cache that a `step` at that position expects: the
        prefill of cached decoding. Entries at or after `cache_position` are overwritten by later steps before
        any step reads them.
        """
        q, k, v = self._project(x)
        out = self._attend_sequence(q, k, v)  # [batch, length, heads, depth]
        y = self.output_dense(out)
        if cache_position is not None:
            return y, self.cache_from_sequence(k, v, cache_position)
        return y

    def step(self, x, cache, position):
        """One generation step.

        Args:
            x: `[batch, 1, hidden]`, the layer input at `position`.
            cache: dict with `keys` and `values` windows `[batch, heads, window, depth]` (and what else the
                variant keeps), as returned by `init_cache`, `cache_from_sequence` or the previous step.
            position: scalar int32, the generation index of `x`.

        Returns:
            `([batch, 1, hidden], updated cache)`.
        """
        q, k, v = self._project(x)  # [batch, 1, heads, depth]
        cache = self._write(cache, k[:, 0], v[:, 0], position)
        logits = tf.einsum("bqhd,bhwd->bhqw", q, cache["keys"])  # [batch, heads, 1, window]
        weights = self.softmax(logits, mask=self._window_mask(position))
        out = tf.einsum("bhqw,bhwd->bqhd", weights, cache["values"])  # [batch, 1, heads, depth]
        return self.output_dense(out), cache

    @staticmethod
    def _write_slot(window, kv, *slot):
        """`window` `[batch, heads, *cells, depth]` with `kv` `[batch, heads, depth]` written at cell `slot`.

        XLA updates the buffer in place; TensorFlow's executor does when nothing else holds it.
        """
        batch, heads = tf.meshgrid(tf.range(tf.shape(window)[0]), tf.range(window.shape[1]), indexing="ij")
        cell = [tf.fill(tf.shape(batch), s) for s in slot]
        indices = tf.stack([batch, heads, *cell], axis=-1)  # [batch, heads, 2 + len(slot)]
        return tf.tensor_scatter_nd_update(window, indices, kv)

    # Positions between window jumps; None: the window never jumps (`begin_block` is then never needed).
    decode_period = None

    def begin_block(self, cache, position):
        """The cache with its window moved to the query block starting at `position` (default: unchanged)."""
        del position
        return cache

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
        """The cache before position 0 (all zeros) for `batch_size` images."""
        raise NotImplementedError

    def cache_from_sequence(self, k, v, position):
        """The cache a step at `position` expects, from keys/values `[batch, prefix, heads, depth]` of the first
        `prefix >= position` positions."""
        raise NotImplementedError

    def _write(self, cache, k, v, position):
        """Writes `position`'s key and value `[batch, heads, depth]` into the cache."""
        raise NotImplementedError

    def _window_mask(self, position):
        """bool `[window]`: which window slots `position` may attend to."""
        raise NotImplementedError

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
import numpy as np
import tensorflow as tf

from imagetransformer.layers import cache_writes


def masking_bias(mask, dtype):
    """Additive attention bias of a bool `mask` (True = may attend): 0 where allowed, a large negative elsewhere.

    Adding it to the scores before the softmax masks them in one elementwise pass (Keras' `Softmax(mask=...)`
    selects twice, before and after, which costs two extra passes over the score tensor forward and backward).
    Every query here sees at least itself, so no row is masked entirely.
    """
    dtype = tf.as_dtype(dtype)
    large_negative = -3e4 if dtype == tf.float16 else -1e9
    return tf.where(mask, tf.zeros([], dtype), tf.constant(large_negative, dtype))


@tf.custom_gradient
def dot_product_attention(q, k, v, bias):
    """`softmax(q k^T + bias) v` over the last two axes, with a backward pass that never re-reads the scores.

    The softmax gradient `w * (dw - rowsum(dw * w))` needs `rowsum(dw * w)`, which equals `rowsum(d_out * out)`
    (as `dw = d_out v^T` and `out = w v`): a sum over `depth` instead of a pass over the whole
    `[..., query_len, memory_len]` score tensor. This is the backward of flash attention, minus the tiling. The
    scores are also not kept for the backward pass, only the attention weights.

    Args:
        q: `[..., query_len, depth]`; k, v: `[..., memory_len, depth]` (same leading axes).
        bias: additive mask (`masking_bias`) broadcastable to `[..., query_len, memory_len]`; no gradient.

    Returns:
        `[..., query_len, depth]`.
    """
    weights = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) + bias)  # [..., query_len, memory_len]
    out = tf.matmul(weights, v)

    def grad(d_out):
        d_weights = tf.matmul(d_out, v, transpose_b=True)  # [..., query_len, memory_len]
        accumulate = tf.float64 if d_out.dtype == tf.float64 else tf.float32  # also for bfloat16 / float16
        row = tf.reduce_sum(tf.cast(d_out, accumulate) * tf.cast(out, accumulate), axis=-1, keepdims=True)
        d_logits = weights * (d_weights - tf.cast(row, d_weights.dtype))
        return (tf.matmul(d_logits, k), tf.matmul(d_logits, q, transpose_a=True),
                tf.matmul(weights, d_out, transpose_a=True), None)  # the mask is a constant

    return out, grad


class MaskedSelfAttention(keras.layers.Layer):
    """Base class: fused query/key/value projection, masked softmax attention, output projection.

    Queries, keys and values are kept heads-major, `[batch, heads, time, depth]`, from the projection on: query
    blocks are then a reshape of the time axis, and both attention products are plain batched matrix
    products over `[batch, heads, blocks]` with no transposes of the large score tensor.

    Args:
        num_heads: number of attention heads; the input size must be a multiple of it.
        kernel_initializer: initializer of the query/key/value and output projections (Keras initializer or name).
        **kwargs: forwarded to `keras.layers.Layer`.
    """

    def __init__(self, num_heads, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        hidden_size = input_shape[-1]
        if hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={hidden_size} must be a multiple of num_heads={self.num_heads}."
            )
        self.depth = hidden_size // self.num_heads
        # One matmul for queries, keys and values, heads-major: [batch, 3, heads, time, depth].
        self.qkv = keras.layers.EinsumDense(
            "btd,dnhk->bnhtk", output_shape=(3, self.num_heads, None, self.depth), name="qkv",
            kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy,
        )
        self.qkv.build(input_shape)
        self.output_dense = keras.layers.EinsumDense(
            "bhtk,hkd->btd", output_shape=(None, hidden_size), name="output", dtype=self.dtype_policy,
            kernel_initializer=self.kernel_initializer,
        )
        self.output_dense.build((None, self.num_heads, None, self.depth))

    # ----------------------------------------------------------------------------------------------------------
    # Shared pieces.
    # ----------------------------------------------------------------------------------------------------------
    def _project(self, x):
        """`[batch, time, hidden]` -> queries (pre-scaled), keys, values, each `[batch, heads, time, depth]`."""
        q, k, v = tf.unstack(self.qkv(x), 3, axis=1)
        return q * tf.cast(self.depth**-0.5, q.dtype), k, v

    @staticmethod
    def _attend(q, k, v, bias):
        """Attention of query blocks over their memories.

        Args:
            q: `[batch, heads, blocks, query_len, depth]`.
            k, v: `[batch, heads, blocks, memory_len, depth]`.
            bias: `masking_bias` of the mask, broadcastable to `[batch, heads, blocks, query_len, memory_len]`.

        Returns:
            `[batch, heads, blocks, query_len, depth]`.
        """
        return dot_product_attention(q, k, v, bias)  # scores: [batch, heads, blocks, query_len, memory_len]

    def _bias(self, mask):
        """`masking_bias` of a constant NumPy mask, in the layer's compute dtype."""
        return masking_bias(tf.constant(mask), self.compute_dtype)

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
        y = self.output_dense(self._attend_sequence(q, k, v))  # [batch, heads, length, depth] -> [.., hidden]
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
        q, k, v = self._project_one(x)  # [batch, heads, depth]
        cache = self._write(cache, k, v, position)
        out = self._attend_window(q[:, :, None], cache["keys"], cache["values"], self._window_mask(position))
        return self._output_one(out), cache

    # A step's projections are the same einsums as `qkv` and `output_dense` for one position, written as plain
    # 2-D matrix products over the reshaped kernels (reshapes are free): on the graph executor an einsum adds
    # transposes around its product, which costs more than the product itself at this size.
    def _project_one(self, x):
        """`[batch, 1, hidden]` -> queries (pre-scaled), keys, values, each `[batch, heads, depth]`."""
        kernel = tf.cast(self.qkv.kernel, x.dtype)  # [hidden, 3, heads, depth]
        qkv = tf.matmul(x[:, 0], tf.reshape(kernel, [kernel.shape[0], -1]))  # [batch, 3 * heads * depth]
        q, k, v = tf.unstack(tf.reshape(qkv, [-1, 3, self.num_heads, self.depth]), 3, axis=1)
        return q * tf.cast(self.depth**-0.5, q.dtype), k, v

    def _output_one(self, out):
        """`[batch, heads, 1, depth]` -> `[batch, 1, hidden]`."""
        kernel = tf.cast(self.output_dense.kernel, out.dtype)  # [heads, depth, hidden]
        flat = tf.reshape(out, [-1, self.num_heads * self.depth])
        return tf.matmul(flat, tf.reshape(kernel, [self.num_heads * self.depth, -1]))[:, None]

    @staticmethod
    def _attend_window(q, keys, values, mask):
        """One query per image and head against its cached window.

        Args:
            q: `[batch, heads, 1, depth]` in the compute dtype.
            keys, values: `[batch, heads, window, depth]`, in the compute dtype or in a narrower cache dtype
                (`bfloat16`, see `Decoder(cache_dtype=...)`).
            mask: bool `[window]`, the slots the query may see.

        Returns:
            `[batch, heads, 1, depth]` in the dtype of `q`.

        With a narrower cache the two products run in its dtype (half the bytes read per step) and the softmax
        in float32; in the compute dtype this is exactly the teacher-forced `_attend`.
        """
        if keys.dtype == q.dtype:
            return dot_product_attention(q, keys, values, masking_bias(mask, q.dtype))
        scores = tf.matmul(tf.cast(q, keys.dtype), keys, transpose_b=True)  # [batch, heads, 1, window]
        weights = tf.nn.softmax(tf.cast(scores, tf.float32) + masking_bias(mask, tf.float32))
        return tf.cast(tf.matmul(tf.cast(weights, values.dtype), values), q.dtype)

    @staticmethod
    def _write_slot(window, kv, *slot):
        """`window` `[batch, heads, *cells, depth]` with `kv` `[batch, heads, depth]` written at cell `slot`.

        Seen as rows of `depth` values, the cell of image `b` and head `h` is row `(b * heads + h) * cells +
        ravel(slot)`: one `cache_writes.write_rows` of `batch * heads` rows (in place on the graph executor).
        """
        shape = tf.shape(window)
        cells = window.shape[2:-1]
        cell = tf.constant(0, tf.int32)
        for index, size in zip(slot, cells):  # ravel the cell index, row-major
            cell = cell * size + tf.cast(index, tf.int32)
        rows = tf.range(shape[0] * window.shape[1]) * int(np.prod(cells)) + cell  # [batch * heads]
        depth = window.shape[-1]
        written = cache_writes.write_rows(tf.reshape(window, [-1, depth]), rows, tf.reshape(kv, [-1, depth]))
        return tf.reshape(written, shape)

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
        config.update(num_heads=self.num_heads,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config

    # ----------------------------------------------------------------------------------------------------------
    # What a variant defines.
    # ----------------------------------------------------------------------------------------------------------
    def _attend_sequence(self, q, k, v):
        """q, k, v: `[batch, heads, length, depth]` -> `[batch, heads, length, depth]`."""
        raise NotImplementedError

    def init_cache(self, batch_size, dtype):
        """The cache before position 0 (all zeros) for `batch_size` images."""
        raise NotImplementedError

    def cache_from_sequence(self, k, v, position):
        """The cache a step at `position` expects, from keys/values `[batch, heads, prefix, depth]` of the first
        `prefix >= position` positions."""
        raise NotImplementedError

    def _write(self, cache, k, v, position):
        """Writes `position`'s key and value `[batch, heads, depth]` into the cache."""
        raise NotImplementedError

    def _window_mask(self, position):
        """bool `[window]`: which window slots `position` may attend to."""
        raise NotImplementedError

"""Writes into decoding caches: in place for TensorFlow's graph executor, functional under XLA.

A cached decoding step writes one position's key and value into each layer's cache and then reads the whole
window. Written as `tf.tensor_scatter_nd_update`, XLA updates the buffer in place, but TensorFlow's graph
executor (what TF Serving runs an exported signature with) copies the whole cache on every step, because the
loop variable's buffer is still referenced when the scatter runs: at the paper's CIFAR-10 size that is 25 MB read
and written per generated sub-pixel, and the exported `complete` signature ran 2.2x slower than in-process XLA
decoding.

Inside `in_place_writes()` (which the decoder enters while it traces a loop for the graph executor), `write_rows`
uses `InplaceUpdate`, whose CPU/GPU kernels write into the input buffer and return it. That is safe here
because a cache buffer has exactly one reader of its old contents, the write itself: every later read of the
layer's cache in a step reads the written tensor, and the next step's write depends (through the sampled token)
on all of this step's reads. The decoder hands the loop copies of the caches it was given (`own_buffers`), so a
caller's tensors, and constants the graph optimizer folded, are never written. `InplaceUpdate` has no XLA kernel;
outside the context (the XLA step loop, teacher forcing) `write_rows` is the functional scatter.
"""

import contextlib
import contextvars

import tensorflow as tf

_IN_PLACE = contextvars.ContextVar("imagetransformer_in_place_cache_writes", default=False)


@contextlib.contextmanager
def in_place_writes(enabled=True):
    """Within this context, graphs traced by the decoder write their caches in place (`write_rows`)."""
    token = _IN_PLACE.set(bool(enabled))
    try:
        yield
    finally:
        _IN_PLACE.reset(token)


def writes_in_place():
    """Whether `write_rows` traced now writes in place."""
    return _IN_PLACE.get()


def own_buffers(state):
    """`state` (a nest of cache tensors) with every tensor copied into a fresh buffer when writes are in place,
    so that the loop never writes into a tensor its caller still holds; unchanged otherwise."""
    if not writes_in_place():
        return state
    return tf.nest.map_structure(lambda t: tf.raw_ops.DeepCopy(x=t) if t.shape.rank else t, state)


def write_rows(buffer, rows, values):
    """`buffer` with `values` written at rows `rows` of its first axis.

    Args:
        buffer: `[N, ...]`, a cache (reshaped so that a write is whole rows: reshapes share the buffer).
        rows: int32 `[R]` row indices.
        values: `[R, ...]` (the trailing shape of `buffer`).

    Returns:
        The written buffer: the same memory as `buffer` inside `in_place_writes()` on the graph executor.
    """
    values = tf.cast(values, buffer.dtype)
    if writes_in_place():
        return tf.raw_ops.InplaceUpdate(x=buffer, i=rows, v=values)
    return tf.tensor_scatter_nd_update(buffer, rows[:, None], values)

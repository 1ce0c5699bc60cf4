"""Local 1D self-attention: raster order cut into query blocks, each with a memory flange before it.

Positions are grouped into consecutive query blocks of `block_length`. All queries of a block share one memory:
the `memory_length` positions before the block and the block itself, masked so that a query sees only
positions at or before it (and none before the image start). Time and memory grow linearly with the number of
positions: `length / block_length` blocks of `block_length x (memory_length + block_length)` scores.

```
positions:  ... | memory_length | block b (block_length) | ...
query i of block b sees:  [b*L - M, b*L + i]
```
"""

import keras
import numpy as np
import tensorflow as tf

from imagetransformer.layers.attention import MaskedSelfAttention


@keras.saving.register_keras_serializable(package="imagetransformer")
class LocalSelfAttention1D(MaskedSelfAttention):
    """Multi-head causal self-attention within query blocks and a memory flange.

    Args:
        num_heads: number of heads; the input size must be a multiple of it.
        block_length: positions per query block; must divide the sequence length.
        memory_length: positions before each block that its queries also attend to.
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `call(x)`: `[batch, length, hidden]` -> `[batch, length, hidden]`.
        Cache: the window as a ring buffer, keys and values `[batch, heads, memory_length + block_length,
        depth]`; position `p` in slot `p mod (memory_length + block_length)`.

    Example:
    >>> layer = LocalSelfAttention1D(num_heads=2, block_length=4, memory_length=4)
    >>> layer(tf.zeros([1, 16, 8])).shape
    TensorShape([1, 16, 8])
    """

    def __init__(self, num_heads, block_length, memory_length, **kwargs):
        super().__init__(num_heads, **kwargs)
        if int(block_length) < 1:
            raise ValueError(f"block_length={block_length} must be a positive number of positions.")
        if int(memory_length) < 0:
            raise ValueError(f"memory_length={memory_length} must be zero or a positive number of positions.")
        self.block_length = int(block_length)
        self.memory_length = int(memory_length)

    def build(self, input_shape):
        super().build(input_shape)
        self.length = int(input_shape[1])
        block, memory = self.block_length, self.memory_length
        if self.length % block:
            raise ValueError(
                f"block_length={block} must divide the number of positions {self.length} "
                "(H*W for dmol, H*W*C for categorical); choose a divisor of it."
            )
        self.num_blocks = self.length // block
        # mask[n, i, j]: query i of block n may see memory slot j (position n*L - M + j).
        query = np.arange(self.length).reshape(self.num_blocks, block, 1)
        key = (np.arange(self.num_blocks) * block - memory)[:, None, None] + np.arange(memory + block)[None, None]
        self._mask = (key >= 0) & (key <= query)  # [blocks, block_length, memory_length + block_length]

    @property
    def prefix_unit(self):
        return self.block_length

    def _attend_sequence(self, q, k, v):
        block, memory = self.block_length, self.memory_length
        batch, length = tf.shape(q)[0], q.shape[2]  # length: all positions, or a prefix of whole blocks
        blocks = length // block
        q = tf.reshape(q, [batch, self.num_heads, blocks, block, self.depth])

        def memories(x):
            # Each block's memory: an overlapping frame of the front-padded sequence.
            # [batch, heads, length, depth] -> [batch, heads, blocks, memory_length + block_length, depth]
            return tf.signal.frame(tf.pad(x, [[0, 0], [0, 0], [memory, 0], [0, 0]]), memory + block, block, axis=2)

        out = self._attend(q, memories(k), memories(v), self._bias(self._mask[:blocks]))
        return tf.reshape(out, [batch, self.num_heads, length, self.depth])  # from [b, h, blocks, block, depth]

    # Cached decoding: the window is a ring buffer of `memory_length + block_length` slots; position p lives in
    # slot p mod size. The window of a block is that many consecutive positions, so a new block overwrites exactly
    # the slots of the positions that leave its window, and the window never has to move.
    @property
    def window_length(self):
        return self.memory_length + self.block_length

    def init_cache(self, batch_size, dtype):
        shape = [batch_size, self.num_heads, self.window_length, self.depth]
        return {"keys": tf.zeros(shape, dtype), "values": tf.zeros(shape, dtype)}

    def _slot_positions(self, position):
        """int `[window]`: the position each slot holds while `position` is generated (may be < 0: padding)."""
        start = (position // self.block_length) * self.block_length - self.memory_length
        return start + (tf.range(self.window_length) - start) % self.window_length

    def cache_from_sequence(self, k, v, position):
        # The window of the block holding `position - 1`, laid out as the ring buffer.
        front = self.window_length  # enough padding for any slot position >= -window_length
        index = self._slot_positions(position - 1) + front

        def window(x):  # [batch, heads, prefix, depth] -> [batch, heads, window, depth]
            return tf.gather(tf.pad(x, [[0, 0], [0, 0], [front, 0], [0, 0]]), index, axis=2)

        return {"keys": window(k), "values": window(v)}

    def _write(self, cache, k, v, position):
        slot = position % self.window_length
        return {"keys": self._write_slot(cache["keys"], k, slot),
                "values": self._write_slot(cache["values"], v, slot)}

    def _window_mask(self, position):
        positions = self._slot_positions(position)
        return (positions >= 0) & (positions <= position)

    def get_config(self):
        config = super().get_config()
        config.update(block_length=self.block_length, memory_length=self.memory_length)
        return config

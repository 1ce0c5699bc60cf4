"""Local 2D self-attention: 2D query blocks, each with a memory region above, left and right of it.

The position grid (`rows x cols`) is cut into query blocks of `query_shape = (qh, qw)`. The sequence arrives in
block-raster order (blocks in raster order, raster order inside a block; see `imagetransformer.ordering`), so
the queries of block `n` are simply positions `[n * qh * qw, (n + 1) * qh * qw)`.

Every query of a block shares one memory: the block itself extended by `memory_flange = (fh, fw)`, i.e. `fh`
rows above it and `fw` columns on each side, `(qh + fh) x (qw + 2 fw)` cells:

```
        <-fw-> <--qw--> <-fw->
   fh  [ mem  |  mem   | mem  ]     rows above: all generated already
   qh  [ mem  | QUERY  | ---- ]     right of the block in its own block row: not yet generated (masked)
```

Each query sees the memory cells that precede it in generation order (and lie inside the image). Memory and
time grow linearly with the number of pixels: one `Q x M` score matrix per block.
"""

import keras
import numpy as np
import tensorflow as tf

from imagetransformer.layers.attention import MaskedSelfAttention


@keras.saving.register_keras_serializable(package="imagetransformer")
class LocalSelfAttention2D(MaskedSelfAttention):
    """Multi-head self-attention over 2D query blocks and their memory flanges.

    Args:
        num_heads: number of heads; the input size must be a multiple of it.
        grid_shape: `(rows, cols)` of the position grid; the input length must be `rows * cols`.
        query_shape: `(qh, qw)` query block; must divide `grid_shape`.
        memory_flange: `(fh, fw)`: rows above the block, and columns on each side of it, in its memory.
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `call(x)`: `[batch, rows * cols, hidden]` (block-raster order) -> same shape.
        Cache: the current block's memory window `[batch, heads, memory_length, depth]`, refreshed from the
        padded grid of all keys/values `[batch, heads, fh + rows, fw + cols + fw, depth]` when a block starts.

    Example:
    >>> layer = LocalSelfAttention2D(2, grid_shape=(4, 4), query_shape=(2, 2), memory_flange=(2, 2))
    >>> layer(tf.zeros([1, 16, 8])).shape
    TensorShape([1, 16, 8])
    """

    def __init__(self, num_heads, grid_shape, query_shape, memory_flange, **kwargs):
        super().__init__(num_heads, **kwargs)
        self.grid_shape = tuple(int(g) for g in grid_shape)
        self.query_shape = tuple(int(q) for q in query_shape)
        self.memory_flange = tuple(int(f) for f in memory_flange)
        (rows, cols), (qh, qw), (fh, fw) = self.grid_shape, self.query_shape, self.memory_flange
        if qh < 1 or qw < 1 or rows % qh or cols % qw:
            raise ValueError(
                f"query_shape={self.query_shape} must be positive and divide the position grid "
                f"{self.grid_shape}; choose block rows and columns that divide it."
            )
        if fh < 0 or fw < 0:
            raise ValueError(f"memory_flange={self.memory_flange} must be non-negative (rows above, cols each side).")
        self.num_blocks = (rows // qh, cols // qw)
        self.query_length = qh * qw
        self.memory_shape = (qh + fh, qw + 2 * fw)
        self.memory_length = self.memory_shape[0] * self.memory_shape[1]
        self._mask = self._memory_mask()

    def _memory_mask(self):
        """bool `[blocks, query_length, memory_length]`: query q of block n may see memory cell m."""
        (rows, cols), (qh, qw), (fh, fw) = self.grid_shape, self.query_shape, self.memory_flange
        nbh, nbw = self.num_blocks
        # Generation index of every cell of the padded grid (-1 on the flanges outside the image).
        index = np.arange(rows * cols).reshape(nbh, nbw, qh, qw).transpose(0, 2, 1, 3).reshape(rows, cols)
        padded = np.pad(index, [(fh, 0), (fw, fw)], constant_values=-1)
        mh, mw = self.memory_shape
        mask = np.zeros((nbh * nbw, self.query_length, self.memory_length), bool)
        for i in range(nbh):
            for j in range(nbw):
                n = i * nbw + j
                memory = padded[i * qh : i * qh + mh, j * qw : j * qw + mw].reshape(-1)
                queries = n * self.query_length + np.arange(self.query_length)
                mask[n] = (memory[None, :] >= 0) & (memory[None, :] <= queries[:, None])
        return mask

    def build(self, input_shape):
        super().build(input_shape)
        if input_shape[1] is not None and int(input_shape[1]) != self.grid_shape[0] * self.grid_shape[1]:
            raise ValueError(
                f"LocalSelfAttention2D got {input_shape[1]} positions, expected grid {self.grid_shape}."
            )

    @property
    def prefix_unit(self):
        return self.query_length * self.num_blocks[1]  # one row of query blocks

    def _to_padded_grid(self, x, full_height=False):
        """`[batch, heads, length, depth]` (block-raster; `length` may be a prefix of whole block rows) ->
        `[batch, heads, fh + rows, fw + cols + fw, depth]`, `rows` those of the prefix or, with `full_height`, of
        the grid (zeros below the prefix)."""
        (_, cols), (qh, qw), (fh, fw) = self.grid_shape, self.query_shape, self.memory_flange
        nbw = self.num_blocks[1]
        nbh, rows = x.shape[2] // self.prefix_unit, x.shape[2] // cols
        batch = tf.shape(x)[0]
        x = tf.reshape(x, [batch, self.num_heads, nbh, nbw, qh, qw, self.depth])
        x = tf.transpose(x, [0, 1, 2, 4, 3, 5, 6])  # [batch, heads, nbh, qh, nbw, qw, depth]
        x = tf.reshape(x, [batch, self.num_heads, rows, cols, self.depth])
        below = self.grid_shape[0] - rows if full_height else 0
        return tf.pad(x, [[0, 0], [0, 0], [fh, below], [fw, fw], [0, 0]])

    def _memory_blocks(self, x):
        """`[batch, heads, length, depth]` -> `[batch, heads, blocks, memory_length, depth]`."""
        (qh, qw), (mh, mw) = self.query_shape, self.memory_shape
        nbh, nbw = x.shape[2] // self.prefix_unit, self.num_blocks[1]
        batch = tf.shape(x)[0]
        grid = self._to_padded_grid(x)
        grid = tf.signal.frame(grid, mh, qh, axis=2)  # [batch, heads, nbh, mh, padded_cols, depth]
        grid = tf.signal.frame(grid, mw, qw, axis=4)  # [batch, heads, nbh, mh, nbw, mw, depth]
        grid = tf.transpose(grid, [0, 1, 2, 4, 3, 5, 6])  # [batch, heads, nbh, nbw, mh, mw, depth]
        return tf.reshape(grid, [batch, self.num_heads, nbh * nbw, self.memory_length, self.depth])

    def _attend_sequence(self, q, k, v):
        batch, blocks = tf.shape(q)[0], q.shape[2] // self.query_length  # all blocks, or whole block rows
        q = tf.reshape(q, [batch, self.num_heads, blocks, self.query_length, self.depth])
        out = self._attend(q, self._memory_blocks(k), self._memory_blocks(v), self._bias(self._mask[:blocks]))
        return tf.reshape(out, [batch, self.num_heads, blocks * self.query_length, self.depth])

    # Cached decoding keeps the whole padded grid `[batch, heads, fh + rows, fw + cols + fw, depth]` (what later
    # blocks' memories read) and the current block's window `[batch, heads, memory_length, depth]`.
    def init_cache(self, batch_size, dtype):
        (rows, cols), (fh, fw) = self.grid_shape, self.memory_flange
        grid = [batch_size, self.num_heads, fh + rows, fw + cols + fw, self.depth]
        window = [batch_size, self.num_heads, self.memory_length, self.depth]
        return {"keys": tf.zeros(window, dtype), "values": tf.zeros(window, dtype),
                "grid_keys": tf.zeros(grid, dtype), "grid_values": tf.zeros(grid, dtype)}

    def _block_origin(self, position):
        """Grid row/col of the top-left cell of `position`'s query block, and the offset inside the block."""
        (qh, qw), nbw = self.query_shape, self.num_blocks[1]
        block, offset = position // self.query_length, position % self.query_length
        return (block // nbw) * qh, (block % nbw) * qw, offset

    def _window_of(self, grid, position):
        """The memory of `position`'s block: `[batch, heads, memory_length, depth]` cut from the padded grid."""
        row, col, _ = self._block_origin(position)  # in padded coordinates the memory starts here
        mh, mw = self.memory_shape
        window = tf.slice(grid, tf.stack([0, 0, row, col, 0]), [-1, -1, mh, mw, -1])
        return tf.reshape(window, [tf.shape(grid)[0], self.num_heads, self.memory_length, self.depth])

    def cache_from_sequence(self, k, v, position):
        grid_keys = self._to_padded_grid(k, full_height=True)
        grid_values = self._to_padded_grid(v, full_height=True)
        previous = tf.maximum(position - 1, 0)
        return {"keys": self._window_of(grid_keys, previous), "values": self._window_of(grid_values, previous),
                "grid_keys": grid_keys, "grid_values": grid_values}

    @property
    def decode_period(self):
        return self.query_length

    def begin_block(self, cache, position):
        # A new block starts at `position`: cut its memory from the grid (once per block, not per step).
        return {**cache, "keys": self._window_of(cache["grid_keys"], position),
                "values": self._window_of(cache["grid_values"], position)}

    def _write(self, cache, k, v, position):
        (fh, fw), (qw, mw) = self.memory_flange, (self.query_shape[1], self.memory_shape[1])
        row, col, offset = self._block_origin(position)
        in_row, in_col = offset // qw, offset % qw
        slot = (fh + in_row) * mw + fw + in_col  # the position's cell inside its block's memory

        def write_grid(grid, kv):
            return self._write_slot(grid, kv, fh + row + in_row, fw + col + in_col)

        return {"keys": self._write_slot(cache["keys"], k, slot),
                "values": self._write_slot(cache["values"], v, slot),
                "grid_keys": write_grid(cache["grid_keys"], k), "grid_values": write_grid(cache["grid_values"], v)}

    def _window_mask(self, position):
        return tf.gather(tf.constant(self._mask.reshape(-1, self.memory_length)), position)

    def get_config(self):
        config = super().get_config()
        config.update(
            grid_shape=self.grid_shape, query_shape=self.query_shape, memory_flange=self.memory_flange
        )
        return config

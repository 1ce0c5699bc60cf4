"""Causal convolutional stem: each position's input starts with a view of its neighbourhood of earlier pixels."""

import keras
import numpy as np
import tensorflow as tf

from imagetransformer.layers import cache_writes


def causal_mask(rows_above, cols_each_side, include_center):
    """The PixelCNN kernel mask of shape `[rows_above + 1, 2 * cols_each_side + 1]` (1 = the tap is used).

    Every tap of the rows above is used; in the kernel's last row (the position's own row) only the taps left of
    the center, and the center itself with `include_center` (PixelCNN's mask "B"; without it, mask "A").
    """
    mask = np.ones((rows_above + 1, 2 * cols_each_side + 1), np.float32)
    mask[-1, cols_each_side + int(include_center):] = 0.0
    return mask


@keras.saving.register_keras_serializable(package="imagetransformer")
class CausalConvStem(keras.layers.Layer):
    """Masked 2D convolutions over the position grid in raster order, added to the pixel embedding.

    The first convolution (mask "A") sees, for the position at grid cell `(r, c)`, the value embeddings of the
    cells `(r - rows_above .. r - 1, c - cols .. c + cols)` and `(r, c - cols .. c - 1)`: only cells generated
    before `(r, c)` in raster order, so the model stays causal. Each further layer (mask "B": its own cell too) is a
    residual `h + conv(relu(h))`, widening the view by `rows_above` rows and `cols` columns. The output at a
    position depends only on strictly earlier positions, like the shifted embedding it is added to; the attention
    layers then start from locally contextualized inputs (as PixelSNAIL interleaves causal convolutions with
    attention) instead of having to find each pixel's neighbours first.

    Only raster order has this geometry (local 1D and global attention); in block-raster order (local 2D) a cell
    above and to the right may lie in a later block.

    Cached decoding keeps the grid each layer reads, padded with `rows_above` rows on top and `cols` columns on each side
    and laid out `[rows, cols, batch, hidden]`: a step writes the previous position's value embedding (and its own
    output of each layer) into one cell and reads its kernel's window with one slice.

    Args:
        grid_shape: `(rows, cols)` of the position grid.
        kernel: `(rows_above, cols_each_side)` of each convolution.
        num_layers: convolutions (the first one mask "A", the others mask "B" residuals).
        embed_values: a function `(tokens [..., token_size], channels [...]) -> [..., hidden]`, the value
            embedding of the cells (the model passes its `PixelEmbedding.embed_values`; not serialized).
        channels_of_positions: int array `[length]`, the channel of each position's sub-pixel (zeros for pixels).
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `call(tokens)`: int `[batch, length, token_size]` (or a prefix) -> `[batch, length, hidden]`.
        `step(previous_token, state, position)`: `[batch, token_size]`, state, scalar -> `[batch, 1, hidden]`,
        state.
    """

    def __init__(self, grid_shape, kernel=(2, 2), num_layers=1, **kwargs):
        super().__init__(**kwargs)
        self.grid_shape = tuple(int(g) for g in grid_shape)
        self.kernel = tuple(int(k) for k in kernel)
        if len(self.kernel) != 2 or self.kernel[0] < 0 or self.kernel[1] < 0 or sum(self.kernel) == 0:
            raise ValueError(f"conv_stem kernel={kernel!r} must be (rows above, cols on each side), non-negative and "
                             "not both 0.")
        self.num_layers = int(num_layers)
        if self.num_layers < 1:
            raise ValueError(f"conv_stem_layers={num_layers!r} must be >= 1.")
        self.embed_values = None  # set by the model before the first call
        self.channels_of_positions = None

    def build(self, input_shape):
        hidden = int(input_shape[-1])
        self.hidden_size = hidden
        rows_above, cols = self.kernel
        taps = (rows_above + 1, 2 * cols + 1)
        self.kernels, self.biases, self.masks = [], [], []
        for i in range(self.num_layers):
            self.kernels.append(self.add_weight(name=f"kernel_{i}", shape=(*taps, hidden, hidden),
                                                initializer="glorot_uniform"))
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(hidden,), initializer="zeros"))
            self.masks.append(causal_mask(rows_above, cols, include_center=i > 0)[:, :, None, None])

    def _masked_kernel(self, i, dtype):
        return tf.cast(self.kernels[i], dtype) * tf.constant(self.masks[i], dtype)

    def _layer(self, i, h):
        """Layer `i` on grids `[batch, rows, cols, hidden]` (valid convolution after causal padding)."""
        rows_above, cols = self.kernel
        padded = tf.pad(h if i == 0 else tf.nn.relu(h), [[0, 0], [rows_above, 0], [cols, cols], [0, 0]])
        out = tf.nn.conv2d(padded, self._masked_kernel(i, h.dtype), strides=1, padding="VALID")
        out += tf.cast(self.biases[i], h.dtype)
        return out if i == 0 else h + out

    def _grids(self, tokens):
        """Every layer's grid `[batch, rows, cols, hidden]` (layer 0: the value embeddings), full length."""
        length = self.grid_shape[0] * self.grid_shape[1]
        prefix = tokens.shape[1]
        tokens = tf.pad(tokens, [[0, 0], [0, length - prefix], [0, 0]])  # later cells never reach earlier ones
        values = self.embed_values(tokens, tf.constant(self.channels_of_positions)[None])  # [B, length, hidden]
        grids = [tf.reshape(values, [-1, *self.grid_shape, self.hidden_size])]
        for i in range(self.num_layers):
            grids.append(self._layer(i, grids[-1]))
        return grids

    def call(self, tokens, cache_position=None):
        """With `cache_position`, also returns the decoding state (every layer's padded grid)."""
        prefix = tokens.shape[1]
        grids = self._grids(tokens)
        out = tf.reshape(grids[-1], [-1, self.grid_shape[0] * self.grid_shape[1], self.hidden_size])[:, :prefix]
        if cache_position is None:
            return out
        return out, [self._pad_for_cache(g) for g in grids[:-1]]  # what the layers read; the last is output only

    def _pad_for_cache(self, grid):
        """`[batch, rows, cols, hidden]` -> the padded cache layout `[rows + above, cols + 2 side, batch, hidden]`."""
        rows_above, cols = self.kernel
        padded = tf.pad(grid, [[0, 0], [rows_above, 0], [cols, cols], [0, 0]])
        return tf.transpose(padded, [1, 2, 0, 3])

    def init_cache(self, batch_size, dtype):
        """The state before position 0: the padded grid that each layer reads, zeros."""
        rows_above, cols = self.kernel
        shape = [self.grid_shape[0] + rows_above, self.grid_shape[1] + 2 * cols, batch_size, self.hidden_size]
        return [tf.zeros(shape, dtype) for _ in range(self.num_layers)]

    def step(self, previous_token, state, position):
        """The stem output at `position`, given the token of `position - 1`; writes both into the grids."""
        rows_above, cols = self.kernel
        width = self.grid_shape[1]
        previous = tf.maximum(position - 1, 0)  # at position 0 the write is garbage that step 1 overwrites
        channels = tf.fill(tf.shape(previous_token)[:1], tf.constant(self.channels_of_positions)[previous])
        value = self.embed_values(previous_token, channels)  # [batch, hidden]
        dtype = state[0].dtype

        def write(grid, p, x):  # grid [rows, cols, batch, hidden]: cell (r, c) is row r * cols + c
            shape = tf.shape(grid)
            cell = (p // width + rows_above) * grid.shape[1] + p % width + cols  # in padded coordinates
            rows = tf.reshape(grid, [grid.shape[0] * grid.shape[1], -1])  # [cells, batch * hidden]
            return tf.reshape(cache_writes.write_rows(rows, cell[None], tf.reshape(x, [1, -1])), shape)

        state = list(state)
        state[0] = write(state[0], previous, value)
        row, col = position // width, position % width
        h = None
        for i in range(self.num_layers):
            window = tf.slice(state[i], tf.stack([row, col, 0, 0]),
                              [rows_above + 1, 2 * cols + 1, -1, -1])  # [taps_r, taps_c, batch, hidden]
            if i > 0:
                window = tf.nn.relu(window)
            out = tf.einsum("ijbd,ijde->be", window, self._masked_kernel(i, dtype)) + tf.cast(self.biases[i], dtype)
            h = out if i == 0 else h + out
            if i + 1 < self.num_layers:
                state[i + 1] = write(state[i + 1], position, h)
        return h[:, None, :], state

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], self.hidden_size)

    def get_config(self):
        config = super().get_config()
        config.update(grid_shape=self.grid_shape, kernel=self.kernel, num_layers=self.num_layers)
        return config

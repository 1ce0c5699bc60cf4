"""Generation order: how an image becomes a sequence of positions and back.

The model predicts one *position* at a time. What a position is depends on the output head:

- `dmol`: one position per pixel; the position's token holds the pixel's C channel values.
- `categorical`: one position per sub-pixel (channel value); the C sub-pixels of a pixel are consecutive.

The positions form a *grid* of `rows x cols` (`H x W` for dmol, `H x W*C` for categorical), and the grid is read
in one of two orders:

- `raster` (global and local 1D attention): row by row, left to right;
- `block_raster` (local 2D attention): the grid is cut into query blocks of `query_shape` (rows, cols); blocks
  are visited in raster order and the positions inside a block in raster order, as in the paper.

Example, a 4x4 grid with `query_shape=(2, 2)` in block-raster order:

    0  1 |  4  5
    2  3 |  6  7
    -----+------
    8  9 | 12 13
   10 11 | 14 15

`PixelOrder` holds this geometry and converts tensors between image layout and sequence layout with reshapes and
transposes only (no gathers).
"""

import numpy as np
import tensorflow as tf

DISTRIBUTIONS = ("dmol", "categorical")


class PixelOrder:
    """The geometry of one image shape read in one generation order.

    Args:
        image_shape: `(H, W, C)`.
        subpixels: whether each channel value is its own position (categorical head) or a pixel is one position.
        query_shape: `(rows, cols)` of a query block in grid positions for block-raster order, or `None` for
            raster order.
    """

    def __init__(self, image_shape, subpixels, query_shape=None):
        self.image_shape = tuple(int(d) for d in image_shape)
        height, width, channels = self.image_shape
        self.subpixels = bool(subpixels)
        self.channels = channels
        # A token is what one position holds: C values (one pixel) or 1 value (one sub-pixel).
        self.token_size = 1 if self.subpixels else channels
        self.grid_shape = (height, width * channels) if self.subpixels else (height, width)
        self.length = self.grid_shape[0] * self.grid_shape[1]
        self.query_shape = None if query_shape is None else tuple(int(q) for q in query_shape)
        if self.query_shape is not None:
            rows, cols = self.grid_shape
            qh, qw = self.query_shape
            if rows % qh or cols % qw:
                raise ValueError(
                    f"query_shape={self.query_shape} must divide the position grid {self.grid_shape} "
                    f"(image {self.image_shape}{', one position per sub-pixel' if self.subpixels else ''}); "
                    "choose block rows and columns that divide it."
                )
            self.num_blocks = (rows // qh, cols // qw)

    # ----------------------------------------------------------------------------------------------------------
    # Static per-position tables (NumPy), in generation order.
    # ----------------------------------------------------------------------------------------------------------
    def grid_coordinates(self):
        """`(grid_row, grid_col)` int arrays of shape [length]: where each generation step sits in the grid."""
        index = np.arange(self.length).reshape(self._blocked_grid_shape())
        grid = self._blocks_to_grid_np(index)  # grid[r, c] = generation index of that cell
        rows, cols = np.empty(self.length, np.int64), np.empty(self.length, np.int64)
        rr, cc = np.meshgrid(np.arange(self.grid_shape[0]), np.arange(self.grid_shape[1]), indexing="ij")
        rows[grid.ravel()] = rr.ravel()
        cols[grid.ravel()] = cc.ravel()
        return rows, cols

    def pixel_coordinates(self):
        """`(row, col, channel)` int arrays of shape [length]; channel is 0 for dmol (a position is a pixel)."""
        rows, cols = self.grid_coordinates()
        if self.subpixels:
            return rows, cols // self.channels, cols % self.channels
        return rows, cols, np.zeros_like(cols)

    def known_length(self, known_rows):
        """Number of leading positions in generation order that lie in image rows `< known_rows`."""
        known_rows = int(known_rows)
        if not 0 <= known_rows <= self.image_shape[0]:
            raise ValueError(
                f"known_rows={known_rows} must be between 0 and the image height {self.image_shape[0]}."
            )
        if self.query_shape is not None and known_rows % self.query_shape[0]:
            raise ValueError(
                f"known_rows={known_rows} must be a multiple of the query block height {self.query_shape[0]} "
                "for local_2d attention (blocks are generated whole, in raster order); use a multiple of "
                f"{self.query_shape[0]}."
            )
        return known_rows * self.grid_shape[1]

    # ----------------------------------------------------------------------------------------------------------
    # Tensor conversions.
    # ----------------------------------------------------------------------------------------------------------
    def to_sequence(self, images):
        """`[B, H, W, C]` -> tokens `[B, length, token_size]` in generation order."""
        batch = tf.shape(images)[0]
        grid = tf.reshape(images, [batch, *self.grid_shape, self.token_size])
        return tf.reshape(self._grid_to_blocks(grid), [batch, self.length, self.token_size])

    def from_sequence(self, sequence):
        """`[B, length, ...]` in generation order -> `[B, H, W, C, ...]` (dmol: `[B, H, W, ...]`)."""
        batch = tf.shape(sequence)[0]
        trailing = sequence.shape[2:]
        blocks = tf.reshape(sequence, [batch, *self._blocked_grid_shape(), *trailing])
        grid = self._blocks_to_grid(blocks)  # [B, rows, cols, ...]
        height, width, channels = self.image_shape
        if self.subpixels:
            return tf.reshape(grid, [batch, height, width, channels, *trailing])
        return tf.reshape(grid, [batch, height, width, *trailing])

    def to_images(self, tokens):
        """Tokens `[B, length, token_size]` in generation order -> images `[B, H, W, C]` (inverse of `to_sequence`)."""
        return tf.reshape(self.from_sequence(tokens), [tf.shape(tokens)[0], *self.image_shape])

    def _blocked_grid_shape(self):
        if self.query_shape is None:
            return self.grid_shape
        return (*self.num_blocks, *self.query_shape)

    def _grid_to_blocks(self, grid):
        # grid: [B, rows, cols, ...] -> [B, block_rows, block_cols, query_rows, query_cols, ...]
        if self.query_shape is None:
            return grid
        batch, trailing = tf.shape(grid)[0], grid.shape[3:]
        (nbh, nbw), (qh, qw) = self.num_blocks, self.query_shape
        split = tf.reshape(grid, [batch, nbh, qh, nbw, qw, *trailing])
        perm = [0, 1, 3, 2, 4] + list(range(5, 5 + len(trailing)))
        return tf.transpose(split, perm)

    def _blocks_to_grid(self, blocks):
        if self.query_shape is None:
            return blocks
        batch, trailing = tf.shape(blocks)[0], blocks.shape[5:]
        rows, cols = self.grid_shape
        perm = [0, 1, 3, 2, 4] + list(range(5, 5 + len(trailing)))
        return tf.reshape(tf.transpose(blocks, perm), [batch, rows, cols, *trailing])

    def _blocks_to_grid_np(self, blocks):
        if self.query_shape is None:
            return blocks
        return blocks.transpose(0, 2, 1, 3).reshape(self.grid_shape)

"""PixelCNN++'s shifted convolutions: convolutions that see only pixels above (and to the left of) their output.

PixelCNN++ (Salimans et al. 2017) keeps two streams so that no blind spot forms:

- the **down** stream (`shift="down"`): a `(kh, kw)` kernel over the `kh - 1` rows above and the current row,
  centred horizontally (padding: `kh - 1` rows on top, `(kw - 1) / 2` columns on each side). Shifted down by one
  row afterwards (`down_shift`), an output sees only rows strictly above it;
- the **down-right** stream (`shift="down_right"`): a `(kh, kw)` kernel over rows above and columns to the left,
  including the current pixel (padding: `kh - 1` rows on top, `kw - 1` columns on the left). Shifted right by one
  column (`right_shift`), an output sees only pixels before it in raster order within its row.

Inside the network the receptive field only grows from these starting points, and every later convolution is
causal in the same sense (it includes the current position of its input, which holds only past information).
Strided versions downsample by 2 and the transposed versions upsample by 2 with the same alignment, as in the
reference implementation (`pixel_cnn_pp/nn.py`).

Shapes: `[batch, H, W, C_in]` -> `[batch, H / s, W / s, filters]` (`ShiftedConv2D`, stride s, H and W divisible
by s) and `[batch, H, W, C_in]` -> `[batch, H * s, W * s, filters]` (`ShiftedConv2DTranspose`).
"""

import keras
from keras import ops

SHIFTS = ("down", "down_right")


def down_shift(x):
    """`[B, H, W, C]` moved down one row (a zero row on top, the last row dropped)."""
    return ops.pad(x, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]


def right_shift(x):
    """`[B, H, W, C]` moved right one column (a zero column on the left, the last column dropped)."""
    return ops.pad(x, [[0, 0], [0, 0], [1, 0], [0, 0]])[:, :, :-1]


def _check(shift, kernel_size):
    if shift not in SHIFTS:
        raise ValueError(f"shift={shift!r} must be one of {', '.join(SHIFTS)}.")
    kernel_size = tuple(int(k) for k in kernel_size)
    if len(kernel_size) != 2 or min(kernel_size) < 1:
        raise ValueError(f"kernel_size={kernel_size!r} must be a pair of positive integers.")
    if shift == "down" and kernel_size[1] % 2 == 0:
        raise ValueError(f"shift='down' centres its kernel horizontally: kernel_size={kernel_size} needs an odd "
                         "width.")
    return kernel_size


@keras.saving.register_keras_serializable(package="imagetransformer")
class ShiftedConv2D(keras.layers.Layer):
    """A convolution padded so that each output sees only its own row and the rows above (and, for `down_right`,
    only columns up to its own).

    Args:
        filters: output channels.
        kernel_size: `(rows, cols)`; PixelCNN++ uses `(2, 3)` for `down` and `(2, 2)` for `down_right`.
        shift: `"down"` or `"down_right"`.
        strides: 1, or 2 to halve the height and width.
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes: `[B, H, W, C]` -> `[B, H / strides, W / strides, filters]`.

    Example:
    >>> conv = ShiftedConv2D(8, (2, 3), shift="down")
    >>> conv(tf.zeros([1, 4, 4, 3])).shape
    TensorShape([1, 4, 4, 8])
    """

    def __init__(self, filters, kernel_size, shift="down", strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = _check(shift, kernel_size)
        self.shift = shift
        self.strides = int(strides)
        rows, cols = self.kernel_size
        left, right = ((cols - 1) // 2, (cols - 1) // 2) if shift == "down" else (cols - 1, 0)
        self._padding = [[0, 0], [rows - 1, 0], [left, right], [0, 0]]
        self.conv = keras.layers.Conv2D(self.filters, self.kernel_size, strides=self.strides, padding="valid",
                                        dtype=self.dtype_policy, name="conv")

    def build(self, input_shape):
        batch, height, width, channels = input_shape
        pad = self._padding
        self.conv.build((batch, None if height is None else height + pad[1][0],
                         None if width is None else width + sum(pad[2]), channels))

    def call(self, x):
        return self.conv(ops.pad(x, self._padding))  # [B, H / s, W / s, filters]

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        s = self.strides
        return (batch, None if height is None else -(-height // s), None if width is None else -(-width // s),
                self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, shift=self.shift, strides=self.strides)
        return config


@keras.saving.register_keras_serializable(package="imagetransformer")
class ShiftedConv2DTranspose(keras.layers.Layer):
    """A transposed convolution (upsampling by `strides`) cropped so that it keeps the causal alignment of
    `ShiftedConv2D`: output row `r` depends on input rows `<= r // strides` only (and, for `down_right`, output
    column `c` on input columns `<= c // strides`).

    Args:
        filters: output channels.
        kernel_size: `(rows, cols)`, as for `ShiftedConv2D`.
        shift: `"down"` or `"down_right"`.
        strides: the upsampling factor (PixelCNN++: 2); `kernel_size` must be at least `strides - 1` in each
            dimension.
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes: `[B, H, W, C]` -> `[B, H * strides, W * strides, filters]`.

    Example:
    >>> up = ShiftedConv2DTranspose(8, (2, 2), shift="down_right", strides=2)
    >>> up(tf.zeros([1, 4, 4, 3])).shape
    TensorShape([1, 8, 8, 8])
    """

    def __init__(self, filters, kernel_size, shift="down", strides=2, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = _check(shift, kernel_size)
        self.shift = shift
        self.strides = int(strides)
        # A "valid" transposed convolution gives (n - 1) * s + k (+ output_padding) outputs per dimension; the
        # reference pads the output to n * s + k - 1 and keeps the first n * s rows (and, for "down", the centred
        # columns): those are the outputs whose kernel taps lie on or above (left of) the matching input.
        self._output_padding = self.strides - 1
        self.conv = keras.layers.Conv2DTranspose(
            self.filters, self.kernel_size, strides=self.strides, padding="valid",
            output_padding=self._output_padding if self.strides > 1 else None, dtype=self.dtype_policy, name="conv")

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, x):
        height, width = ops.shape(x)[1], ops.shape(x)[2]
        y = self.conv(x)  # [B, H * s + k_h - 1, W * s + k_w - 1, filters]
        left = (self.kernel_size[1] - 1) // 2 if self.shift == "down" else 0
        return y[:, : height * self.strides, left : left + width * self.strides]  # [B, H * s, W * s, filters]

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        s = self.strides
        return (batch, None if height is None else height * s, None if width is None else width * s, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, shift=self.shift, strides=self.strides)
        return config

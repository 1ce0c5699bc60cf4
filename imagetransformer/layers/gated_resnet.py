"""PixelCNN++'s gated residual block with concatenated ELUs.

```
x ─┬─ concat_elu ─ conv (F) ─(+ 1x1 conv of concat_elu(aux))─ concat_elu ─ dropout ─ conv (2F) ─ a, b
   │                                                                                    a * sigmoid(b)
   └───────────────────────────────────────────────────────────────────────────────────────── + ──> out
```
`concat_elu(x) = elu([x, -x])` doubles the channels and keeps the information of both signs. The convolutions
are `ShiftedConv2D`s of the block's stream (`down` or `down_right`), so the block is as causal as its input; the
auxiliary input (the other stream, or the up pass's activations in the down pass) enters through a 1x1
convolution (PixelCNN++'s `nin`) and must be causal in the same sense.
"""

import keras
from keras import ops

from imagetransformer.layers.shifted_conv import ShiftedConv2D

KERNELS = {"down": (2, 3), "down_right": (2, 2)}


def concat_elu(x):
    """`elu(concat([x, -x], -1))`: `[..., C]` -> `[..., 2C]`."""
    return ops.elu(ops.concatenate([x, -x], axis=-1))


@keras.saving.register_keras_serializable(package="imagetransformer")
class GatedResnet(keras.layers.Layer):
    """A PixelCNN++ gated residual block on one stream.

    Args:
        shift: the stream, `"down"` (kernel 2x3) or `"down_right"` (kernel 2x2).
        dropout: dropout rate before the second convolution.
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `call(x, aux=None)`: `[B, H, W, F]` (and `[B, H, W, A]`) -> `[B, H, W, F]`.

    Example:
    >>> block = GatedResnet("down_right", dropout=0.1)
    >>> x = tf.zeros([1, 4, 4, 8])
    >>> block(x, aux=tf.zeros([1, 4, 4, 16])).shape
    TensorShape([1, 4, 4, 8])
    """

    def __init__(self, shift="down", dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if shift not in KERNELS:
            raise ValueError(f"shift={shift!r} must be one of {', '.join(KERNELS)}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} must be in [0, 1).")
        self.shift = shift
        self.dropout = float(dropout)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.conv_1 = self.conv_2 = self.aux_projection = None

    def build(self, x_shape, aux_shape=None):
        filters = x_shape[-1]
        doubled = (*x_shape[:-1], 2 * filters)
        kernel = KERNELS[self.shift]
        self.conv_1 = ShiftedConv2D(filters, kernel, self.shift, dtype=self.dtype_policy, name="conv_1")
        self.conv_1.build(doubled)
        if aux_shape is not None:
            self.aux_projection = keras.layers.Dense(filters, dtype=self.dtype_policy, name="aux_projection")
            self.aux_projection.build((*aux_shape[:-1], 2 * aux_shape[-1]))
        self.conv_2 = ShiftedConv2D(2 * filters, kernel, self.shift, dtype=self.dtype_policy, name="conv_2")
        self.conv_2.build(doubled)

    def call(self, x, aux=None, training=None):
        if (aux is None) != (self.aux_projection is None):
            raise ValueError(f"{self.name} was built {'with' if self.aux_projection else 'without'} an auxiliary "
                             "input; call it the same way.")
        h = self.conv_1(concat_elu(x))  # [B, H, W, F]
        if aux is not None:
            h = h + self.aux_projection(concat_elu(aux))  # 1x1 convolution of the other stream
        h = self.dropout_layer(concat_elu(h), training=training)  # [B, H, W, 2F]
        a, b = ops.split(self.conv_2(h), 2, axis=-1)  # [B, H, W, F] each
        return x + a * ops.sigmoid(b)

    def compute_output_shape(self, x_shape, aux_shape=None):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update(shift=self.shift, dropout=self.dropout)
        return config

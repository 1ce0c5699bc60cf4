"""PixelCNN++ (Salimans et al. 2017) as a Keras model: the convolutional baseline of the Image Transformer paper.

```
images [B, H, W, C] uint8 -> [-1, 1], plus a channel of ones (marks the zero padding of the borders)
  up pass, at H x W, H/2 x W/2, H/4 x W/4 (num_scales):
    u  (down stream:       rows above)                 ShiftedConv2D "down",       GatedResnet x num_resnets
    ul (down-right stream: rows above + left in row)   ShiftedConv2D "down_right", GatedResnet(aux=u) x num_resnets
    strided shifted convolutions between scales; every activation is kept for the down pass
  down pass, back up to H x W:
    u  = GatedResnet(u,  aux=kept u)                   (num_resnets + 1 blocks per scale below the top)
    ul = GatedResnet(ul, aux=[u, kept ul])
    transposed shifted convolutions between scales
  elu(ul) [B, H, W, F] -> the project's DMoL head (PixelCNN++'s 1x1 "nin" to the mixture parameters) [B, H, W, P]
```
Generation order is raster order, one pixel (all channels) per position, as for the Image Transformer with the
dmol head, so likelihood, loss, training, evaluation, sampling and export are shared with it
(`imagetransformer.models.base`). There is no key/value cache: sampling re-runs the network once per pixel.

Differences from the reference implementation: no weight normalization or data-dependent initialization (Keras'
default initializers with Adam train it stably at this size), and the mixture head is this project's (its
log-scale bounds and the tanh on the channel coefficients are the reference's).
"""

import keras
import tensorflow as tf

from imagetransformer.models.base import AutoregressiveImageModel
from imagetransformer.heads import DiscretizedLogisticMixtureHead
from imagetransformer.layers.gated_resnet import GatedResnet
from imagetransformer.layers.shifted_conv import ShiftedConv2D, ShiftedConv2DTranspose, down_shift, right_shift
from imagetransformer.ordering import PixelOrder


@keras.saving.register_keras_serializable(package="imagetransformer")
class PixelCNNPlusPlus(AutoregressiveImageModel):
    """PixelCNN++ with a discretized-logistic-mixture head.

    Args:
        image_shape: `(H, W, C)` with C in {1, 3}; H and W divisible by `2 ** (num_scales - 1)`.
        num_filters: channels of both streams (the paper: 160).
        num_resnets: gated residual blocks per scale in the up pass (the paper: 5); the down pass has one more
            per scale below the top.
        num_scales: resolutions (the paper: 3, i.e. two downsamplings).
        dropout: dropout rate inside the residual blocks (the paper: 0.5 on CIFAR-10).
        num_mixtures: logistic mixture components (the paper: 10).
        distribution: only `"dmol"` (PixelCNN++ predicts whole pixels).
        **kwargs: forwarded to `keras.Model` (`name`, `dtype`, ...).

    Example:
    >>> model = PixelCNNPlusPlus(image_shape=(8, 8, 1), num_filters=8, num_resnets=1, num_mixtures=2)
    >>> model.log_prob(tf.zeros([2, 8, 8, 1], tf.uint8)).shape
    TensorShape([2])
    """

    def __init__(self, image_shape=(32, 32, 3), num_filters=160, num_resnets=5, num_scales=3, dropout=0.5,
                 num_mixtures=10, distribution="dmol", **kwargs):
        super().__init__(**kwargs)
        self.image_shape = self._validate_image_shape(image_shape)
        if distribution != "dmol":
            raise ValueError(f"distribution={distribution!r}: PixelCNN++ predicts whole pixels with the dmol head; "
                             "use distribution='dmol'.")
        for name, value in (("num_filters", num_filters), ("num_resnets", num_resnets),
                            ("num_scales", num_scales), ("num_mixtures", num_mixtures)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} must be in [0, 1).")
        factor = 2 ** (int(num_scales) - 1)
        if self.image_shape[0] % factor or self.image_shape[1] % factor:
            raise ValueError(
                f"image_shape={self.image_shape}: height and width must be divisible by {factor} for "
                f"num_scales={num_scales} (each scale halves them); choose fewer scales or another image size.")
        self.distribution = distribution
        self.num_filters = int(num_filters)
        self.num_resnets = int(num_resnets)
        self.num_scales = int(num_scales)
        self.dropout = float(dropout)
        self.num_mixtures = int(num_mixtures)
        self.order = PixelOrder(self.image_shape, subpixels=False)

        f = self.num_filters
        self.u_init = ShiftedConv2D(f, (2, 3), "down", name="u_init")
        self.ul_init_above = ShiftedConv2D(f, (1, 3), "down", name="ul_init_above")
        self.ul_init_left = ShiftedConv2D(f, (2, 1), "down_right", name="ul_init_left")
        self.up_u, self.up_ul, self.down_u, self.down_ul = [], [], [], []
        self.downsample_u, self.downsample_ul, self.upsample_u, self.upsample_ul = [], [], [], []
        for scale in range(self.num_scales):
            self.up_u.append([GatedResnet("down", self.dropout, name=f"up_{scale}_u_{i}")
                              for i in range(self.num_resnets)])
            self.up_ul.append([GatedResnet("down_right", self.dropout, name=f"up_{scale}_ul_{i}")
                               for i in range(self.num_resnets)])
            blocks = self.num_resnets + (scale < self.num_scales - 1)
            self.down_u.append([GatedResnet("down", self.dropout, name=f"down_{scale}_u_{i}")
                                for i in range(blocks)])
            self.down_ul.append([GatedResnet("down_right", self.dropout, name=f"down_{scale}_ul_{i}")
                                 for i in range(blocks)])
            if scale:
                self.downsample_u.append(ShiftedConv2D(f, (2, 3), "down", strides=2, name=f"downsample_{scale}_u"))
                self.downsample_ul.append(
                    ShiftedConv2D(f, (2, 2), "down_right", strides=2, name=f"downsample_{scale}_ul"))
                self.upsample_u.append(
                    ShiftedConv2DTranspose(f, (2, 3), "down", strides=2, name=f"upsample_{scale}_u"))
                self.upsample_ul.append(
                    ShiftedConv2DTranspose(f, (2, 2), "down_right", strides=2, name=f"upsample_{scale}_ul"))
        self.head = DiscretizedLogisticMixtureHead(self.num_mixtures, self.image_shape[-1], name="head")
        self.bits_per_dim_tracker = keras.metrics.Mean(name="bits_per_dim")
        self.build((None, *self.image_shape))

    @property
    def description(self):
        return (f"PixelCNN++, {self.num_filters} filters, {self.num_resnets} resnets x {self.num_scales} scales, "
                "dmol")

    def build(self, input_shape=None):
        self.features(tf.zeros([1, *self.image_shape], tf.uint8), training=False)  # builds every layer
        self.head.build((None, self.num_filters))
        self.built = True

    def features(self, images, training=None):
        """uint8 `[B, H, W, C]` -> the features `[B, H, W, F]` the head reads; position `(r, c)` depends only on
        pixels before it in raster order."""
        x = tf.cast(images, self.compute_dtype) / 127.5 - 1.0
        x = tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)  # [B, H, W, C + 1]
        u = down_shift(self.u_init(x))  # [B, H, W, F]: rows above
        ul = down_shift(self.ul_init_above(x)) + right_shift(self.ul_init_left(x))  # rows above + left in row
        kept_u, kept_ul = [u], [ul]
        for scale in range(self.num_scales):  # up pass: H x W, H/2 x W/2, ...
            if scale:
                u = self.downsample_u[scale - 1](u)
                ul = self.downsample_ul[scale - 1](ul)
                kept_u.append(u)
                kept_ul.append(ul)
            for block_u, block_ul in zip(self.up_u[scale], self.up_ul[scale]):
                u = block_u(u, training=training)
                ul = block_ul(ul, aux=u, training=training)
                kept_u.append(u)
                kept_ul.append(ul)
        u, ul = kept_u.pop(), kept_ul.pop()
        for scale in reversed(range(self.num_scales)):  # down pass, back to H x W
            for block_u, block_ul in zip(self.down_u[scale], self.down_ul[scale]):
                u = block_u(u, aux=kept_u.pop(), training=training)
                ul = block_ul(ul, aux=tf.concat([u, kept_ul.pop()], axis=-1), training=training)
            if scale:
                u = self.upsample_u[scale - 1](u)
                ul = self.upsample_ul[scale - 1](ul)
        return tf.nn.elu(ul)  # [B, H, W, F]

    def call(self, images, training=None):
        """Head parameters `[B, H, W, P]` (float32) for every pixel, each given the pixels before it."""
        images, _ = self.split_inputs(images)  # refuses labels: this model is unconditional
        self._check_images(images)
        return self.head(self.features(images, training=training))

    def sequence_params(self, tokens, training=None, condition=None):
        """Tokens `[B, H*W, C]` in raster order -> head parameters `[B, H*W, P]`."""
        self.condition.check(condition)  # refuses any: this model is unconditional
        params = self(self.order.to_images(tokens), training=training)  # [B, H, W, P]
        return tf.reshape(params, [tf.shape(tokens)[0], self.order.length, self.head.params_size])

    def get_config(self):
        config = super().get_config()
        config.update(
            image_shape=self.image_shape, num_filters=self.num_filters, num_resnets=self.num_resnets,
            num_scales=self.num_scales, dropout=self.dropout, num_mixtures=self.num_mixtures,
            distribution=self.distribution,
        )
        return config

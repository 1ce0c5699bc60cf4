"""Super-resolution: the Image Transformer decoder composed with a low-resolution encoder (`LowResEncoder`).

```
low_res [B, h, w, C] uint8                       (h, w = H / scale, W / scale)
  -> LowResEmbedding (values + 2D position)      [B, h * w, hidden]
  -> encoder_layers x EncoderBlock (unmasked)    every low-resolution pixel sees every other
  -> LayerNormalization                          memory [B, h * w, hidden]
images [B, H, W, C] uint8
  -> PixelEmbedding, plus at each position the memory of the low-resolution pixel it lies in
  -> the ImageTransformer decoder (local 1D/2D or global masked self-attention), each block also
     cross-attending to the whole memory           [B, length, hidden]
  -> head parameters                              p(image | low_res), exact, as for the unconditional model
```
The memory, and each block's cross-attention keys and values of it, are part of the cached decoder's state:
sampling encodes and projects each low-resolution image once (in the prefill) and then generates one position per
step as the unconditional model does. Two things make the
low-resolution image easy to use from the first steps of training: the encoder's position signal is measured in
full-resolution pixels (`LowResEmbedding(scale=...)`), so queries and keys of the same place match, and each
decoder position gets the encoder output of its own low-resolution pixel added to its input (a nearest-neighbour
"upsampling" of the memory); cross-attention then brings in the neighbourhood.

Training pairs come from full-resolution images alone: `imagetransformer.data.resize.downsample` (area averaging,
rounded) makes the low-resolution input; `--task=super_resolution` does this in the input pipeline.
"""

import inspect

import keras

from imagetransformer.layers import LowResEncoder
from imagetransformer.models.image_transformer import ImageTransformer

# The decoder's defaults, which the encoder shares (width, heads, feed-forward size, dropout, depth).
_DECODER_DEFAULTS = {name: parameter.default
                     for name, parameter in inspect.signature(ImageTransformer.__init__).parameters.items()
                     if parameter.default is not inspect.Parameter.empty}


@keras.saving.register_keras_serializable(package="imagetransformer")
class SuperResolutionTransformer(ImageTransformer):
    """Encoder-decoder Image Transformer of `p(image | its low-resolution version)`: the `ImageTransformer`
    decoder composed with a `LowResEncoder` conditioner (`ImageTransformer(conditioner=LowResEncoder(...))`), built
    from the decoder's arguments and `scale`.

    Inputs are `{"images": uint8 [B, H, W, C], "low_res": uint8 [B, H/scale, W/scale, C]}`; `log_prob(images,
    low_res=...)`, `it.super_resolve(model, low_res)` and `it.complete(model, images, known_rows, low_res=...)`
    take the low-resolution images beside the images.

    Args:
        image_shape: full-resolution `(H, W, C)`.
        scale: integer upsampling factor (4: 7x7 -> 28x28, 8x8 -> 32x32); must divide `H` and `W`.
        encoder_layers: encoder blocks (default: `num_layers`). The encoder has the decoder's width, heads,
            feed-forward size and dropout.
        **kwargs: the `ImageTransformer` arguments of the decoder (`attention`, `num_layers`, `hidden_size`, ...;
            not `num_classes` or `conditioner`) and `keras.Model`'s.

    Example:
    >>> model = SuperResolutionTransformer(image_shape=(8, 8, 1), scale=4, attention="local_1d", num_layers=1,
    ...                                    hidden_size=16, num_heads=2, filter_size=32, block_length=16,
    ...                                    memory_length=16, num_mixtures=2)
    >>> images = tf.zeros([2, 8, 8, 1], tf.uint8)
    >>> model.log_prob(images, low_res=tf.zeros([2, 2, 2, 1], tf.uint8)).shape
    TensorShape([2])
    """

    def __init__(self, image_shape=(32, 32, 3), scale=4, encoder_layers=None, **kwargs):
        if kwargs.get("num_classes") is not None or kwargs.get("conditioner") is not None:
            raise ValueError("A SuperResolutionTransformer is conditioned on low-resolution images, not classes: "
                             "num_classes must be None (train with --conditional=none).")
        kwargs.pop("num_classes", None)
        kwargs.pop("conditioner", None)
        image_shape = self._validate_image_shape(image_shape)
        decoder = {**_DECODER_DEFAULTS, **kwargs}
        if encoder_layers is not None and (int(encoder_layers) != encoder_layers or encoder_layers < 1):
            raise ValueError(f"encoder_layers={encoder_layers!r} must be None (as many as num_layers) or an integer "
                             ">= 1.")
        encoder = LowResEncoder(
            image_shape, scale, decoder["hidden_size"], decoder["num_heads"], decoder["filter_size"],
            dropout=decoder["dropout"], num_layers=decoder["num_layers"] if encoder_layers is None else encoder_layers,
            name="conditioner")
        super().__init__(image_shape=image_shape, conditioner=encoder, **kwargs)

    @property
    def scale(self):
        return self.conditioner.scale

    @property
    def low_res_shape(self):
        return self.conditioner.low_res_shape

    @property
    def encoder_layers(self):
        return self.conditioner.num_layers

    def encode(self, low_res, training=None):
        """Low-resolution images `[B, h, w, C]` -> the memory every decoder block attends to `[B, h * w, hidden]`."""
        return self.conditioner.encode(low_res, training=training)

    @property
    def description(self):
        height, width = self.low_res_shape[:2]
        return (f"Super-resolution Image Transformer {height}x{width} -> {self.image_shape[0]}x{self.image_shape[1]}"
                f", encoder {self.encoder_layers} layers, {self.attention_type} decoder {self.num_layers} layers, "
                f"hidden {self.hidden_size}, {self.distribution}")

    def get_config(self):
        config = super().get_config()
        for key in ("num_classes", "conditioner"):
            config.pop(key, None)
        config.update(scale=self.scale, encoder_layers=self.encoder_layers)
        return config

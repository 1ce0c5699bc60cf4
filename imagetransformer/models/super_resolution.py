"""Super-resolution: the Image Transformer decoder conditioned on a low-resolution image through an encoder.

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

import keras
import tensorflow as tf

from imagetransformer import conditioning
from imagetransformer.data import resize
from imagetransformer.layers import EncoderBlock, LowResEmbedding
from imagetransformer.models.image_transformer import ImageTransformer


@keras.saving.register_keras_serializable(package="imagetransformer")
class SuperResolutionTransformer(ImageTransformer):
    """Encoder-decoder Image Transformer of `p(image | its low-resolution version)`.

    Inputs are `{"images": uint8 [B, H, W, C], "low_res": uint8 [B, H/scale, W/scale, C]}`; `log_prob(images,
    low_res=...)`, `it.super_resolve(model, low_res)` and `it.complete(model, images, known_rows, low_res=...)`
    take the low-resolution images beside the images.

    Args:
        image_shape: full-resolution `(H, W, C)`.
        scale: integer upsampling factor (4: 7x7 -> 28x28, 8x8 -> 32x32); must divide `H` and `W`.
        encoder_layers: encoder blocks (default: `num_layers`). The encoder has the decoder's width, heads,
            feed-forward size and dropout.
        **kwargs: the `ImageTransformer` arguments of the decoder (`attention`, `num_layers`, `hidden_size`, ...;
            not `num_classes`) and `keras.Model`'s.

    Example:
    >>> model = SuperResolutionTransformer(image_shape=(8, 8, 1), scale=4, attention="local_1d", num_layers=1,
    ...                                    hidden_size=16, num_heads=2, filter_size=32, block_length=16,
    ...                                    memory_length=16, num_mixtures=2)
    >>> images = tf.zeros([2, 8, 8, 1], tf.uint8)
    >>> model.log_prob(images, low_res=tf.zeros([2, 2, 2, 1], tf.uint8)).shape
    TensorShape([2])
    """

    cross_attention = True

    def __init__(self, image_shape=(32, 32, 3), scale=4, encoder_layers=None, **kwargs):
        if kwargs.get("num_classes") is not None:
            raise ValueError("A SuperResolutionTransformer is conditioned on low-resolution images, not classes: "
                             "num_classes must be None (train with --conditional=none).")
        kwargs.pop("num_classes", None)
        image_shape = self._validate_image_shape(image_shape)
        scale = resize.check_scale(image_shape, scale)
        if encoder_layers is not None and (int(encoder_layers) != encoder_layers or encoder_layers < 1):
            raise ValueError(f"encoder_layers={encoder_layers!r} must be None (as many as num_layers) or an integer "
                             ">= 1.")
        # Plain attributes that `_make_encoder` reads while `ImageTransformer.__init__` creates the layers.
        self.scale = scale
        self.low_res_shape = (image_shape[0] // scale, image_shape[1] // scale, image_shape[2])
        self._encoder_layers = encoder_layers
        super().__init__(image_shape=image_shape, **kwargs)
        self.condition = conditioning.LowResImage(self.low_res_shape, scale)

    # --------------------------------------------------------------------------------------------------------------
    # The encoder.
    # --------------------------------------------------------------------------------------------------------------
    def _make_encoder(self):
        self.encoder_layers = self.num_layers if self._encoder_layers is None else int(self._encoder_layers)
        self.low_res_embedding = LowResEmbedding(self.low_res_shape, self.hidden_size, scale=self.scale,
                                                 name="low_res_embedding")
        rows, cols, _ = self.order.pixel_coordinates()
        # The low-resolution pixel (raster index into the memory) that each position, in generation order, lies in.
        self._low_res_index = (rows // self.scale) * self.low_res_shape[1] + cols // self.scale  # [length]
        self.encoder_blocks = [
            EncoderBlock(self.num_heads, self.filter_size, self.dropout, name=f"encoder_block_{i}")
            for i in range(self.encoder_layers)
        ]
        self.encoder_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="encoder_norm")

    def _build_encoder(self):
        self.low_res_embedding.build((None, *self.low_res_shape))
        memory_shape = (None, self.low_res_shape[0] * self.low_res_shape[1], self.hidden_size)
        for block in self.encoder_blocks:
            block.build(memory_shape)
        self.encoder_norm.build(memory_shape)

    def encode(self, low_res, training=None):
        """Low-resolution images `[B, h, w, C]` -> the memory every decoder block attends to `[B, h * w, hidden]`."""
        x = self.low_res_embedding(low_res)  # [B, h * w, hidden]
        for block in self.encoder_blocks:
            x = block(x, training=training)
        return self.encoder_norm(x)

    def conditioning(self, condition, training=None):
        """The decoder state's conditioning, computed once per image: `"memory"`, `encode(low_res)` `[B, h * w,
        hidden]`, and `"cross"`, every decoder block's cross-attention keys and values of it."""
        self.condition.check(condition)
        memory = self.encode(condition, training=training)
        cross = [block.cross_attention.memory_keys_values(memory) for block in self.decoder_blocks]
        return {"memory": memory, "cross": cross}

    def _add_condition(self, x, conditioning, position=None):
        """Adds to each position's input the memory of the low-resolution pixel it lies in."""
        index = self._low_res_index[: x.shape[1]] if position is None else tf.gather(self._low_res_index, [position])
        return x + tf.cast(tf.gather(conditioning["memory"], index, axis=1), x.dtype)  # [B, length or 1, hidden]

    @property
    def description(self):
        height, width = self.low_res_shape[:2]
        return (f"Super-resolution Image Transformer {height}x{width} -> {self.image_shape[0]}x{self.image_shape[1]}"
                f", encoder {self.encoder_layers} layers, {self.attention_type} decoder {self.num_layers} layers, "
                f"hidden {self.hidden_size}, {self.distribution}")

    def get_config(self):
        config = super().get_config()
        config.pop("num_classes")
        config.update(scale=self.scale, encoder_layers=self.encoder_layers)
        return config

"""Conditioning on a low-resolution image: the super-resolution model's Transformer encoder."""

import keras
import tensorflow as tf

from imagetransformer import conditioning
from imagetransformer.data import resize
from imagetransformer.layers.encoder_block import EncoderBlock
from imagetransformer.layers.low_res_embedding import LowResEmbedding


@keras.saving.register_keras_serializable(package="imagetransformer")
class LowResEncoder(keras.layers.Layer):
    """The conditioner of a super-resolution Image Transformer, `p(image | low_res)` (see `ClassConditioner` for
    what a conditioner is).

    ```
    low_res [B, h, w, C] uint8                       (h, w = H / scale, W / scale)
      -> LowResEmbedding (values + 2D position)      [B, h * w, hidden]
      -> num_layers x EncoderBlock (unmasked)        every low-resolution pixel sees every other
      -> LayerNormalization                          memory [B, h * w, hidden]
    ```
    The decoder's blocks cross-attend to the memory (`cross_attention` is True), and `add_to_inputs` adds to each
    decoder position the memory of the low-resolution pixel it lies in (a nearest-neighbour "upsampling"), so the
    low-resolution image is usable from the first steps of training; cross-attention brings in the neighbourhood.
    The encoder's position signal is measured in full-resolution pixels (`LowResEmbedding(scale=...)`), so queries
    and keys of the same place match.

    Args:
        image_shape: full-resolution `(H, W, C)`.
        scale: integer downsampling factor; must divide `H` and `W`.
        hidden_size: the decoder's width (the encoder has the same).
        num_heads: attention heads of the encoder blocks.
        filter_size: feed-forward hidden units of the encoder blocks.
        dropout: dropout rate of the encoder blocks.
        num_layers: encoder blocks.
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `call(low_res)`: uint8 `[batch, h, w, C]` -> `{"memory": [batch, h * w, hidden_size]}`.
        `add_to_inputs(x, state, rows, cols)`: `x` `[batch, length, hidden_size]` at full-resolution pixels
        `rows`, `cols` (int `[length]`) -> the same shape.

    Example:
    >>> encoder = LowResEncoder(image_shape=(8, 8, 1), scale=4, hidden_size=16, num_heads=2, filter_size=32)
    >>> encoder(tf.zeros([2, 2, 2, 1], tf.uint8))["memory"].shape
    TensorShape([2, 4, 16])
    """

    cross_attention = True

    def __init__(self, image_shape, scale, hidden_size, num_heads, filter_size, dropout=0.0, num_layers=1,
                 **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.scale = resize.check_scale(self.image_shape, scale)
        if int(num_layers) != num_layers or num_layers < 1:
            raise ValueError(f"encoder_layers={num_layers!r} must be None (as many as num_layers) or an integer "
                             ">= 1.")
        self.hidden_size = int(hidden_size)
        self.num_heads = int(num_heads)
        self.filter_size = int(filter_size)
        self.dropout = float(dropout)
        self.num_layers = int(num_layers)
        height, width, channels = self.image_shape
        self.low_res_shape = (height // self.scale, width // self.scale, channels)
        self.condition = conditioning.LowResImage(self.low_res_shape, self.scale)
        self.low_res_embedding = LowResEmbedding(self.low_res_shape, self.hidden_size, scale=self.scale,
                                                 name="low_res_embedding")
        self.encoder_blocks = [EncoderBlock(self.num_heads, self.filter_size, self.dropout, name=f"encoder_block_{i}")
                               for i in range(self.num_layers)]
        self.encoder_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="encoder_norm")

    def build(self, input_shape=None):
        self.low_res_embedding.build((None, *self.low_res_shape))
        memory_shape = (None, self.low_res_shape[0] * self.low_res_shape[1], self.hidden_size)
        for block in self.encoder_blocks:
            block.build(memory_shape)
        self.encoder_norm.build(memory_shape)
        self.built = True

    def encode(self, low_res, training=None):
        """Low-resolution images `[B, h, w, C]` -> the memory every decoder block attends to `[B, h * w, hidden]`."""
        x = self.low_res_embedding(low_res)  # [B, h * w, hidden]
        for block in self.encoder_blocks:
            x = block(x, training=training)
        return self.encoder_norm(x)

    def call(self, low_res, training=None):
        return {"memory": self.encode(low_res, training=training)}

    def add_to_inputs(self, x, state, rows, cols):
        index = (rows // self.scale) * self.low_res_shape[1] + cols // self.scale  # [length] into the memory
        return x + tf.cast(tf.gather(state["memory"], index, axis=1), x.dtype)  # [B, length, hidden]

    def get_config(self):
        config = super().get_config()
        config.update(image_shape=self.image_shape, scale=self.scale, hidden_size=self.hidden_size,
                      num_heads=self.num_heads, filter_size=self.filter_size, dropout=self.dropout,
                      num_layers=self.num_layers)
        return config

"""One Transformer encoder block: unmasked self-attention and a feed-forward network, each a residual branch."""

import keras

from imagetransformer.layers.feed_forward import ResidualFeedForward


@keras.saving.register_keras_serializable(package="imagetransformer")
class EncoderBlock(ResidualFeedForward, keras.layers.Layer):
    """Pre-normalized encoder block of the super-resolution model: every position attends to every other.

    ```
    x = x + dropout(multi_head_attention(layer_norm(x)))      # no mask: the whole low-resolution image
    x = x + dropout(dense(relu(dense(layer_norm(x)))))
    ```
    The same normalization placement as `DecoderBlock`; the attention is Keras' `MultiHeadAttention` (the
    encoder's sequences are short, `h * w` low-resolution pixels, so full attention is cheap).

    Args:
        num_heads: attention heads; the input width must be a multiple of it.
        filter_size: hidden units of the feed-forward network.
        dropout: dropout rate on both residual branches and inside the feed-forward network.
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `call(x)`: `[batch, length, hidden]` -> `[batch, length, hidden]`.

    Example:
    >>> block = EncoderBlock(num_heads=2, filter_size=32)
    >>> block(tf.zeros([1, 49, 8])).shape
    TensorShape([1, 49, 8])
    """

    def __init__(self, num_heads, filter_size, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.filter_size = int(filter_size)
        self.dropout_rate = float(dropout)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self._make_feed_forward()

    def build(self, input_shape):
        hidden_size = input_shape[-1]
        if hidden_size % self.num_heads:
            raise ValueError(f"hidden size {hidden_size} must be a multiple of num_heads={self.num_heads}.")
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads, hidden_size // self.num_heads, name="attention", dtype=self.dtype_policy
        )
        self.attention.build(input_shape, input_shape)
        self.attention_norm.build(input_shape)
        self._build_feed_forward(input_shape)

    def call(self, x, training=None):
        normed = self.attention_norm(x)  # always pre-normalized
        x = x + self.residual_dropout(self.attention(normed, normed, training=training), training=training)
        return self._feed_forward(x, training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, filter_size=self.filter_size, dropout=self.dropout_rate)
        return config

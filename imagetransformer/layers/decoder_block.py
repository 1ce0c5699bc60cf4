"""One Transformer decoder block: masked self-attention and a feed-forward network, each as a residual branch."""

import keras


@keras.saving.register_keras_serializable(package="imagetransformer")
class DecoderBlock(keras.layers.Layer):
    """Pre-normalized decoder block around any `MaskedSelfAttention` variant.

    ```
    x = x + dropout(attention(layer_norm(x)))
    x = x + dropout(dense(relu(dense(layer_norm(x)))))
    ```

    Normalization placement: *before* each branch ("pre-norm", tensor2tensor's default for the Image
    Transformer, `layer_preprocess_sequence="n"`), with a final layer norm after the last block (in the model).
    The residual stream is never normalized, so gradients reach the embedding undamped and deep stacks train
    without the learning-rate warm-up tuning that post-norm needs; the seed report's post-norm equations
    (`Layernorm(q + dropout(...))`) are the alternative.

    Args:
        attention: a `MaskedSelfAttention` layer (global, local 1D or local 2D), or its serialized config.
        filter_size: hidden units of the feed-forward network.
        dropout: dropout rate on both residual branches and inside the feed-forward network.
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `call(x)`: `[batch, length, hidden]` -> `[batch, length, hidden]`.

    Example:
    >>> from imagetransformer.layers import GlobalSelfAttention
    >>> block = DecoderBlock(GlobalSelfAttention(num_heads=2), filter_size=32)
    >>> block(tf.zeros([1, 16, 8])).shape
    TensorShape([1, 16, 8])
    """

    def __init__(self, attention, filter_size, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(attention, dict):
            attention = keras.layers.deserialize(attention)
        self.attention = attention
        self.filter_size = int(filter_size)
        self.dropout_rate = float(dropout)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="ffn_norm")
        self.ffn_dropout = keras.layers.Dropout(self.dropout_rate)
        self.residual_dropout = keras.layers.Dropout(self.dropout_rate)

    def build(self, input_shape):
        hidden_size = input_shape[-1]
        self.attention_norm.build(input_shape)
        if not self.attention.built:  # a deserialized attention layer arrives built
            self.attention.build(input_shape)
        self.ffn_norm.build(input_shape)
        self.ffn_in = keras.layers.Dense(self.filter_size, activation="relu", name="ffn_in", dtype=self.dtype_policy)
        self.ffn_in.build(input_shape)
        self.ffn_out = keras.layers.Dense(hidden_size, name="ffn_out", dtype=self.dtype_policy)
        self.ffn_out.build((*input_shape[:-1], self.filter_size))

    def _feed_forward(self, x, training):
        h = self.ffn_in(self.ffn_norm(x))
        h = self.ffn_out(self.ffn_dropout(h, training=training))
        return x + self.residual_dropout(h, training=training)

    def call(self, x, training=None, cache_position=None):
        """`x` `[batch, length, hidden]`; with `cache_position` also returns the attention cache (prefill)."""
        attended = self.attention(self.attention_norm(x), cache_position=cache_position)
        if cache_position is not None:
            attended, cache = attended
        x = x + self.residual_dropout(attended, training=training)
        x = self._feed_forward(x, training)
        return x if cache_position is None else (x, cache)

    def step(self, x, cache, position):
        """One generation step: `x` `[batch, 1, hidden]` at `position` -> (output, updated cache)."""
        attended, cache = self.attention.step(self.attention_norm(x), cache, position)
        return self._feed_forward(x + attended, training=False), cache

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            attention=keras.layers.serialize(self.attention), filter_size=self.filter_size,
            dropout=self.dropout_rate,
        )
        return config

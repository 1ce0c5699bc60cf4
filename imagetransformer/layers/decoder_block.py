"""One Transformer decoder block: masked self-attention, optional cross-attention to an encoder's output, and a
feed-forward network, each as a residual branch."""

import keras

from imagetransformer.layers.cross_attention import CrossAttention
from imagetransformer.layers.feed_forward import ResidualFeedForward


@keras.saving.register_keras_serializable(package="imagetransformer")
class DecoderBlock(ResidualFeedForward, keras.layers.Layer):
    """Decoder block around any `MaskedSelfAttention` variant, pre- or post-normalized.

    ```
    norm="pre":                                              norm="post":
    x = x + dropout(attention(layer_norm(x)))                x = layer_norm(x + dropout(attention(x)))
    x = x + dropout(cross_attention(layer_norm(x), memory))  x = layer_norm(x + dropout(cross_attention(x, memory)))
    x = x + dropout(dense(relu(dense(layer_norm(x)))))       x = layer_norm(x + dropout(dense(relu(dense(x)))))
    ```
    (the cross-attention branch only with `cross_attention=True`).

    Normalization placement: `"post"` normalizes the residual stream after each branch, as the paper's
    equations (`Layernorm(q + dropout(...))`) and tensor2tensor's `image_transformer_base`
    (`layer_postprocess_sequence="dan"`) do; the model then needs no final layer norm. `"pre"` normalizes only
    what each branch reads (tensor2tensor's `_nda` variants), with a final layer norm after the last block (in
    the model): the residual stream is never normalized, which trains deep stacks with less warm-up tuning.

    Args:
        attention: a `MaskedSelfAttention` layer (global, local 1D or local 2D), or its serialized config.
        filter_size: hidden units of the feed-forward network.
        dropout: dropout rate on the residual branches and inside the feed-forward network.
        cross_attention: add a branch in which every position attends to all of an encoder's output (the
            super-resolution model's low-resolution image) with a `CrossAttention` of as many heads as the
            self-attention. It sees no other position of the sequence, so causality holds.
        norm: `"pre"` or `"post"` (above).
        kernel_initializer: initializer of the feed-forward kernels (the attention layer has its own).
        **kwargs: forwarded to `keras.layers.Layer`.

    Shapes:
        `call(x)`: `[batch, length, hidden]` -> `[batch, length, hidden]`;
        `call(x, memory=m)` with `cross_attention`: `m = block.cross_attention.memory_keys_values(encoder_output)`,
        the encoder output's keys and values (computed once per image, also for every cached `step`).

    Example:
    >>> from imagetransformer.layers import GlobalSelfAttention
    >>> block = DecoderBlock(GlobalSelfAttention(num_heads=2), filter_size=32)
    >>> block(tf.zeros([1, 16, 8])).shape
    TensorShape([1, 16, 8])
    """

    def __init__(self, attention, filter_size, dropout=0.0, cross_attention=False, norm="pre",
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.norm = norm
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if isinstance(attention, dict):
            attention = keras.layers.deserialize(attention)
        self.attention = attention
        self.filter_size = int(filter_size)
        self.dropout_rate = float(dropout)
        self.has_cross_attention = bool(cross_attention)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self._make_feed_forward()

    def build(self, input_shape):
        self.attention_norm.build(input_shape)
        if not self.attention.built:  # a deserialized attention layer arrives built
            self.attention.build(input_shape)
        if self.has_cross_attention:
            heads = self.attention.num_heads
            self.cross_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="cross_norm")
            self.cross_norm.build(input_shape)
            self.cross_attention = CrossAttention(heads, name="cross_attention", dtype=self.dtype_policy)
            self.cross_attention.build(input_shape)
        self._build_feed_forward(input_shape)

    def _cross_attend(self, x, memory, training):
        if not self.has_cross_attention:
            if memory is not None:
                raise ValueError(f"{self.name} has no cross-attention (cross_attention=False): it takes no memory.")
            return x
        if memory is None:
            raise ValueError(f"{self.name} cross-attends to an encoder output: pass memory, its "
                             "cross_attention.memory_keys_values.")
        attended = self.cross_attention(self._branch_input(x, self.cross_norm), memory)  # [batch, length, hidden]
        return self._residual(x, attended, self.cross_norm, training)

    def call(self, x, training=None, cache_position=None, memory=None):
        """`x` `[batch, length, hidden]`; with `cache_position` also returns the attention cache (prefill);
        `memory`: the encoder output's keys and values with `cross_attention`."""
        attended = self.attention(self._branch_input(x, self.attention_norm), cache_position=cache_position)
        if cache_position is not None:
            attended, cache = attended
        x = self._residual(x, attended, self.attention_norm, training)
        x = self._cross_attend(x, memory, training)
        x = self._feed_forward(x, training)
        return x if cache_position is None else (x, cache)

    def step(self, x, cache, position, memory=None):
        """One generation step: `x` `[batch, 1, hidden]` at `position` -> (output, updated cache)."""
        attended, cache = self.attention.step(self._branch_input(x, self.attention_norm), cache, position)
        x = self._cross_attend(self._residual(x, attended, self.attention_norm, False), memory, training=False)
        return self._feed_forward(x, training=False), cache

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            attention=keras.layers.serialize(self.attention), filter_size=self.filter_size,
            dropout=self.dropout_rate, cross_attention=self.has_cross_attention, norm=self.norm,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config

"""The feed-forward residual branch shared by the decoder and encoder blocks."""

import keras

NORMS = ("pre", "post")


class ResidualFeedForward:
    """Mixin for a `keras.layers.Layer`: the position-wise feed-forward branch of a Transformer block.

    ```
    pre-norm:   x + dropout(dense_out(dropout(relu(dense_in(layer_norm(x))))))     # [batch, length, hidden]
    post-norm:  layer_norm(x + dropout(dense_out(dropout(relu(dense_in(x))))))
    ```
    The layer sets `filter_size`, `dropout_rate`, `norm` (`"pre"` or `"post"`) and `kernel_initializer`, calls
    `_make_feed_forward()` in `__init__` and `_build_feed_forward(input_shape)` in `build`, and applies
    `_feed_forward(x, training)`. The sublayers are the layer's own attributes (`ffn_norm`, `ffn_in`, `ffn_out`,
    `ffn_dropout`, `residual_dropout`), so weights keep their names in saved files; `residual_dropout` and
    `_residual` also serve the layer's other residual branches.
    """

    norm = "pre"
    kernel_initializer = "glorot_uniform"

    def _make_feed_forward(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r} is not a normalization placement; choose one of {', '.join(NORMS)}.")
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="ffn_norm")
        self.ffn_dropout = keras.layers.Dropout(self.dropout_rate)
        self.residual_dropout = keras.layers.Dropout(self.dropout_rate)

    def _build_feed_forward(self, input_shape):
        self.ffn_norm.build(input_shape)
        self.ffn_in = keras.layers.Dense(self.filter_size, activation="relu", name="ffn_in", dtype=self.dtype_policy,
                                         kernel_initializer=self.kernel_initializer)
        self.ffn_in.build(input_shape)
        self.ffn_out = keras.layers.Dense(input_shape[-1], name="ffn_out", dtype=self.dtype_policy,
                                          kernel_initializer=self.kernel_initializer)
        self.ffn_out.build((*input_shape[:-1], self.filter_size))

    def _branch_input(self, x, norm_layer):
        """What a residual branch reads: `layer_norm(x)` with pre-norm, `x` itself with post-norm."""
        return norm_layer(x) if self.norm == "pre" else x

    def _residual(self, x, branch_output, norm_layer, training):
        """`x + dropout(branch_output)`, then `layer_norm` of the sum with post-norm."""
        x = x + self.residual_dropout(branch_output, training=training)
        return norm_layer(x) if self.norm == "post" else x

    def _feed_forward(self, x, training):
        h = self.ffn_in(self._branch_input(x, self.ffn_norm))
        h = self.ffn_out(self.ffn_dropout(h, training=training))
        return self._residual(x, h, self.ffn_norm, training)

"""The feed-forward residual branch shared by the decoder and encoder blocks."""

import keras


class ResidualFeedForward:
    """Mixin for a `keras.layers.Layer`: the pre-normalized position-wise feed-forward branch of a Transformer block.

    ```
    x + dropout(dense_out(dropout(relu(dense_in(layer_norm(x))))))     # [batch, length, hidden]
    ```
    The layer sets `filter_size` and `dropout_rate`, calls `_make_feed_forward()` in `__init__` and
    `_build_feed_forward(input_shape)` in `build`, and applies `_feed_forward(x, training)`. The sublayers are the
    layer's own attributes (`ffn_norm`, `ffn_in`, `ffn_out`, `ffn_dropout`, `residual_dropout`), so weights keep
    their names in saved files; `residual_dropout` also serves the layer's other residual branches.
    """

    def _make_feed_forward(self):
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="ffn_norm")
        self.ffn_dropout = keras.layers.Dropout(self.dropout_rate)
        self.residual_dropout = keras.layers.Dropout(self.dropout_rate)

    def _build_feed_forward(self, input_shape):
        self.ffn_norm.build(input_shape)
        self.ffn_in = keras.layers.Dense(self.filter_size, activation="relu", name="ffn_in", dtype=self.dtype_policy)
        self.ffn_in.build(input_shape)
        self.ffn_out = keras.layers.Dense(input_shape[-1], name="ffn_out", dtype=self.dtype_policy)
        self.ffn_out.build((*input_shape[:-1], self.filter_size))

    def _feed_forward(self, x, training):
        h = self.ffn_in(self.ffn_norm(x))
        h = self.ffn_out(self.ffn_dropout(h, training=training))
        return x + self.residual_dropout(h, training=training)

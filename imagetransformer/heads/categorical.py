"""256-way categorical head: one softmax over the values of each sub-pixel."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from imagetransformer.heads.dmol import inverse_cdf

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="imagetransformer")
class CategoricalHead(keras.layers.Layer):
    """Projects hidden states to 256 logits per sub-pixel position (float32, also under mixed precision).

    Args:
        kernel_initializer: initializer of the projection's kernel (a Keras initializer or its name).
        **kwargs: forwarded to `keras.layers.Layer` (the dtype policy is forced to float32).

    Shapes:
        `call(hidden)`: `[..., hidden]` -> float32 logits `[..., 256]`.
        `log_prob(logits, values)`: `[..., 256]`, int `[..., 1]` -> `[...]` (nats).
        `sample(logits, uniforms, temperature)`: `[batch, 256]`, `[batch, 1]` -> int32 `[batch, 1]`.

    Example:
    >>> head = CategoricalHead()
    >>> head.log_prob(head(tf.zeros([2, 16])), tf.zeros([2, 1], tf.int32)).shape
    TensorShape([2])
    """

    params_size = 256
    token_size = 1
    noise_size = 1

    def __init__(self, kernel_initializer="glorot_uniform", **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.projection = keras.layers.Dense(256, name="projection", dtype="float32",
                                             kernel_initializer=self.kernel_initializer)

    def build(self, input_shape):
        self.projection.build(input_shape)

    def call(self, hidden):
        return self.projection(tf.cast(hidden, tf.float32))

    def distribution(self, logits, values=None):
        """A `tfd.Categorical` over 0..255 per sub-pixel; `values` is accepted for symmetry with DMoL."""
        del values
        return tfd.Categorical(logits=logits)

    def log_prob(self, logits, values):
        """Log-probability in nats of int `values` `[..., 1]`."""
        return self.distribution(logits).log_prob(tf.cast(values[..., 0], tf.int32))

    def sample(self, logits, uniforms, temperature=1.0):
        """One value per row of `logits` `[batch, 256]` at `temperature` (dividing the logits).

        Args:
            uniforms: float32 `[batch, 1]` in [0, 1): inverted through the CDF of the 256 values.

        Returns:
            int32 `[batch, 1]`.
        """
        temperature = tf.reshape(tf.cast(temperature, tf.float32), [-1, 1])
        return inverse_cdf(logits / temperature, uniforms[:, 0])[:, None]

    def get_config(self):
        config = super().get_config()
        config.update(kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config

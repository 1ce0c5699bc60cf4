"""Discretized mixture of logistics (PixelCNN++, Salimans et al. 2017) built from tfp distributions.

Per position (one pixel of C channels) and mixture component k the head predicts a mixture logit, per channel a
location `mu` and a log-scale in the [-1, 1] pixel scale of PixelCNN++, and `C(C-1)/2` coefficients that make
later channels depend linearly on earlier ones (RGB: G on R, B on R and G):

    mu'_G = mu_G + a * x_R          mu'_B = mu_B + b * x_R + c * x_G          (x in [-1, 1])

Each channel value is a logistic quantized to the 256 integers, the edge bins taking the tails:

    P(x) = F(x + 1/2) - F(x - 1/2)   for 0 < x < 255,     P(0) = F(1/2),     P(255) = 1 - F(254.5)

with F the logistic CDF of location `127.5 (mu' + 1)` and scale `127.5 exp(log_scale)` in pixel units. This is
exactly `tfd.QuantizedDistribution(tfd.Logistic(loc - 1/2, scale), low=0, high=255)`, whose `log_prob` works in
log-CDF/log-survival space and stays finite for locations far outside 0..255. Channels are independent given the
component (with the coupled locations), so a pixel is `tfd.MixtureSameFamily` over `tfd.Independent` channels.

Everything here runs in float32, also under a mixed-precision policy.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

# Log-scales in [-1, 1] units are clipped to this range by default: the low end is PixelCNN++'s (a bin is 2/255
# wide, so scales below e^-7 ~ 1e-3 put all mass in one bin anyway); above e^3 (20x the whole range) the
# distribution is flat. `max_log_scale=None` leaves the upper end open, as PixelCNN++ does (the quantized logistic
# of tfp works in log-CDF space, so huge scales stay finite).
MIN_LOG_SCALE = -7.0
MAX_LOG_SCALE = 3.0
_HALF_RANGE = 127.5


def inverse_cdf(logits, uniform):
    """Index drawn from `Categorical(logits)` `[batch, K]` by inverting its CDF at `uniform` `[batch]`."""
    cdf = tf.cumsum(tf.nn.softmax(logits, axis=-1), axis=-1)
    index = tf.reduce_sum(tf.cast(cdf < uniform[:, None], tf.int32), axis=-1)
    return tf.minimum(index, tf.shape(logits)[-1] - 1)  # cdf[-1] may round to just below 1


@keras.saving.register_keras_serializable(package="imagetransformer")
class DiscretizedLogisticMixtureHead(keras.layers.Layer):
    """Projects hidden states to DMoL parameters; builds the distribution, its log-probability and samples.

    Args:
        num_mixtures: number of logistic components K.
        channels: channels per pixel C (1 or 3).
        kernel_initializer: initializer of the projection's kernel (a Keras initializer or its name). Keras'
            default `glorot_uniform` starts many component means outside [-1, 1]; a smaller variance (for
            example `VarianceScaling(0.2, "fan_avg", "uniform")`) starts them inside the pixel range.
        min_log_scale, max_log_scale: clip range of the log-scales in [-1, 1] units; `max_log_scale=None` leaves
            the upper end open.
        **kwargs: forwarded to `keras.layers.Layer` (the dtype policy is forced to float32).

    Shapes:
        `call(hidden)`: `[..., hidden]` -> float32 parameters `[..., K * (1 + 2 C + C (C - 1) / 2)]`.
        `log_prob(params, pixels)`: `[..., P]`, int `[..., C]` -> `[...]` (nats).
        `sample(params, uniforms, temperature)`: `[batch, P]`, `[batch, 1 + C]` -> int32 `[batch, C]`.

    Example:
    >>> head = DiscretizedLogisticMixtureHead(num_mixtures=5, channels=3)
    >>> params = head(tf.zeros([2, 16]))
    >>> head.log_prob(params, tf.zeros([2, 3], tf.int32)).shape
    TensorShape([2])
    """

    def __init__(self, num_mixtures, channels, kernel_initializer="glorot_uniform", min_log_scale=MIN_LOG_SCALE,
                 max_log_scale=MAX_LOG_SCALE, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.num_mixtures = int(num_mixtures)
        self.channels = int(channels)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.min_log_scale = float(min_log_scale)
        self.max_log_scale = None if max_log_scale is None else float(max_log_scale)
        if self.max_log_scale is not None and self.max_log_scale <= self.min_log_scale:
            raise ValueError(f"max_log_scale={max_log_scale} must be above min_log_scale={min_log_scale} (or None).")
        self.num_coefficients = self.channels * (self.channels - 1) // 2
        self.params_size = self.num_mixtures * (1 + 2 * self.channels + self.num_coefficients)
        self.token_size = self.channels
        self.noise_size = 1 + self.channels  # uniforms per sampled pixel: the component, then each channel
        self.projection = keras.layers.Dense(self.params_size, name="projection", dtype="float32",
                                             kernel_initializer=self.kernel_initializer)

    def build(self, input_shape):
        self.projection.build(input_shape)

    def call(self, hidden):
        return self.projection(tf.cast(hidden, tf.float32))

    def split(self, params):
        """Parameters -> (logits [..., K], means [..., K, C], log_scales [..., K, C], coefficients [..., K, C']).

        Means and log-scales are in PixelCNN++'s [-1, 1] units; log-scales are clipped to
        `[min_log_scale, max_log_scale]`, coefficients squashed by tanh.
        """
        k, c = self.num_mixtures, self.channels
        logits, means, log_scales, coefficients = tf.split(
            params, [k, k * c, k * c, k * self.num_coefficients], axis=-1
        )
        batch_shape = tf.shape(params)[:-1]

        def per_component(x, size):
            return tf.reshape(x, tf.concat([batch_shape, [k, size]], 0))

        log_scales = per_component(log_scales, c)
        if self.max_log_scale is None:
            log_scales = tf.maximum(log_scales, self.min_log_scale)
        else:
            log_scales = tf.clip_by_value(log_scales, self.min_log_scale, self.max_log_scale)
        return (
            logits, per_component(means, c), log_scales,
            tf.tanh(per_component(coefficients, self.num_coefficients)),
        )

    def _coupled_means(self, means, coefficients, scaled_pixels):
        """Locations of every channel given the channels before it: `mu'_c = mu_c + sum_{j<c} coef * x_j`.

        Args:
            means: `[..., K, C]`; coefficients `[..., K, C']`; scaled_pixels `[..., 1, C]` in [-1, 1].
        """
        coupled, index = [means[..., 0]], 0
        for channel in range(1, self.channels):
            shift = 0.0
            for earlier in range(channel):
                shift += coefficients[..., index] * scaled_pixels[..., earlier]
                index += 1
            coupled.append(means[..., channel] + shift)
        return tf.stack(coupled, axis=-1)

    def distribution(self, params, pixels):
        """The mixture distribution of `pixels` `[..., C]` (its coupled locations use `pixels` themselves).

        The returned distribution is the model's exact conditional for evaluating `log_prob(pixels)`; to draw
        pixels use `sample`, which couples each channel to the channels drawn before it.
        """
        logits, means, log_scales, coefficients = self.split(params)
        scaled = tf.cast(pixels, tf.float32)[..., None, :] / _HALF_RANGE - 1.0  # [..., 1, C]
        locations = _HALF_RANGE * (self._coupled_means(means, coefficients, scaled) + 1.0)
        scales = _HALF_RANGE * tf.exp(log_scales)
        channels = tfd.QuantizedDistribution(tfd.Logistic(locations - 0.5, scales), low=0.0, high=255.0)
        return tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(logits=logits),
            components_distribution=tfd.Independent(channels, reinterpreted_batch_ndims=1),
        )

    def log_prob(self, params, pixels):
        """Log-probability in nats of integer `pixels` `[..., C]` under `params` `[..., P]`."""
        return self.distribution(params, pixels).log_prob(tf.cast(pixels, tf.float32))

    def sample(self, params, uniforms, temperature=1.0):
        """Draws one pixel per row of `params` `[batch, P]`: the component first, then channels in order.

        Each channel is rounded and clipped to 0..255 before it conditions the next (as PixelCNN++ samples).
        `temperature` divides the mixture logits and multiplies the scales; 1.0 samples the model exactly.

        Args:
            uniforms: float32 `[batch, 1 + C]` in [0, 1): the randomness (see `noise_size`); the first picks the
                component by inverting the mixture CDF, the others the channels by inverting the logistic CDF.
            temperature: scalar or `[batch]` float.

        Returns:
            int32 `[batch, C]`.
        """
        logits, means, log_scales, coefficients = self.split(params)
        temperature = tf.reshape(tf.cast(temperature, tf.float32), [-1, 1])  # [batch or 1, 1]
        uniforms = tf.clip_by_value(uniforms, 1e-7, 1.0 - 1e-7)
        component = inverse_cdf(logits / temperature, uniforms[:, 0])  # [batch]
        chosen = tf.one_hot(component, self.num_mixtures, dtype=tf.float32)[..., None]  # [batch, K, 1]
        means, coefficients = [tf.reduce_sum(x * chosen, axis=1) for x in (means, coefficients)]
        scales = _HALF_RANGE * tf.exp(tf.reduce_sum(log_scales * chosen, axis=1)) * temperature  # [batch, C]
        pixels, index = [], 0
        for channel in range(self.channels):
            mean = means[:, channel]
            for earlier in range(channel):
                mean += coefficients[:, index] * (pixels[earlier] / _HALF_RANGE - 1.0)
                index += 1
            u = uniforms[:, channel + 1]
            logistic = _HALF_RANGE * (mean + 1.0) + scales[:, channel] * (tf.math.log(u) - tf.math.log1p(-u))
            pixels.append(tf.clip_by_value(tf.round(logistic), 0.0, 255.0))
        return tf.cast(tf.stack(pixels, axis=-1), tf.int32)

    def get_config(self):
        config = super().get_config()
        config.update(num_mixtures=self.num_mixtures, channels=self.channels,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                      min_log_scale=self.min_log_scale, max_log_scale=self.max_log_scale)
        return config

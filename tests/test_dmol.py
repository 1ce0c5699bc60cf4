"""The DMoL head against an independent NumPy implementation of the PixelCNN++ formula, and its stability."""

import numpy as np
import pytest
import tensorflow as tf

from imagetransformer.heads import CategoricalHead, DiscretizedLogisticMixtureHead


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def pixelcnnpp_log_prob(logits, means, log_scales, coefficients, pixels):
    """PixelCNN++'s discretized logistic mixture log-likelihood in float64 (Salimans et al. 2017, eq. 2).

    Args: logits [N, K]; means, log_scales [N, K, C] in [-1, 1] units; coefficients [N, K, C(C-1)/2] (already
    squashed); pixels [N, C] integers.
    """
    x = pixels.astype(np.float64) / 127.5 - 1.0  # [N, C]
    channels = x.shape[1]
    means = means.astype(np.float64).copy()
    index = 0
    for c in range(1, channels):
        for j in range(c):
            means[:, :, c] += coefficients[:, :, index] * x[:, None, j]
            index += 1
    inv_scale = np.exp(-log_scales.astype(np.float64))
    centered = x[:, None, :] - means
    plus = inv_scale * (centered + 1.0 / 255.0)
    minus = inv_scale * (centered - 1.0 / 255.0)
    log_cdf_plus = _log_sigmoid(plus)  # x = 0: all mass below 0.5
    log_survival_minus = _log_sigmoid(-minus)  # x = 255: all mass above 254.5
    # Interior: sigmoid(plus) - sigmoid(minus), as a difference of CDFs left of the mean and of survival
    # functions right of it (where each is far from 1), in log space.
    log_cdf_minus, log_survival_plus = _log_sigmoid(minus), _log_sigmoid(-plus)
    with np.errstate(divide="ignore"):
        left = log_cdf_plus + np.log1p(-np.exp(log_cdf_minus - log_cdf_plus))
        right = log_survival_minus + np.log1p(-np.exp(log_survival_plus - log_survival_minus))
    interior = np.where(centered < 0, left, right)
    value = pixels[:, None, :]
    log_probs = np.where(value == 0, log_cdf_plus, np.where(value == 255, log_survival_minus, interior))
    log_mix = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    return np.logaddexp.reduce(log_mix + log_probs.sum(-1), axis=-1)


def _random_params(head, n, rng, location_spread=1.0):
    k, c, cc = head.num_mixtures, head.channels, head.num_coefficients
    logits = rng.randn(n, k)
    means = rng.uniform(-location_spread, location_spread, (n, k, c))
    log_scales = rng.uniform(-5.0, 0.0, (n, k, c))
    raw_coefficients = rng.randn(n, k, cc)
    params = np.concatenate(
        [logits, means.reshape(n, -1), log_scales.reshape(n, -1), raw_coefficients.reshape(n, -1)], axis=-1
    ).astype(np.float32)
    # The reference sees the same float32-rounded values as the head.
    as_float32 = [x.astype(np.float32).astype(np.float64) for x in (logits, means, log_scales, raw_coefficients)]
    return params, (*as_float32[:3], np.tanh(as_float32[3]))


@pytest.mark.parametrize("channels", [1, 3])
def test_log_prob_matches_numpy_pixelcnnpp(channels):
    rng = np.random.RandomState(0)
    head = DiscretizedLogisticMixtureHead(num_mixtures=4, channels=channels)
    n = 600
    params, parts = _random_params(head, n, rng)
    pixels = rng.randint(0, 256, (n, channels))
    pixels[:100] = 0  # edge bins, alone and mixed with interior values
    pixels[100:200] = 255
    pixels[200:300, 0] = 0
    pixels[300:400, -1] = 255
    expected = pixelcnnpp_log_prob(*parts, pixels)
    actual = head.log_prob(tf.constant(params), tf.constant(pixels)).numpy()
    np.testing.assert_allclose(actual, expected, rtol=2e-4, atol=2e-4)


@pytest.mark.slow  # 16.7M evaluations; the model-level test covers normalization in the default suite
def test_one_pixel_probabilities_sum_to_one_over_all_values():
    rng = np.random.RandomState(1)
    head = DiscretizedLogisticMixtureHead(num_mixtures=3, channels=3)
    params, _ = _random_params(head, 1, rng)
    grid = np.stack(np.meshgrid(*[np.arange(256)] * 3, indexing="ij"), -1).reshape(-1, 3)
    log_probs = head.log_prob(tf.constant(np.repeat(params, len(grid), 0)), tf.constant(grid)).numpy()
    assert abs(np.exp(log_probs.astype(np.float64)).sum() - 1.0) < 1e-4


@pytest.mark.parametrize("extreme", ["far_locations", "tiny_scales", "huge_scales", "huge_logits"])
def test_loss_and_gradients_stay_finite_for_extreme_parameters(extreme):
    head = DiscretizedLogisticMixtureHead(num_mixtures=2, channels=3)
    k, c = 2, 3
    logits, means, log_scales, coefficients = np.zeros(k), np.zeros((k, c)), np.zeros((k, c)), np.zeros((k, 3))
    if extreme == "far_locations":
        means[:] = [[1e4, -1e4, 50.0], [-3e3, 2e3, -80.0]]
    elif extreme == "tiny_scales":
        log_scales[:] = -60.0
        means[:] = 0.3
    elif extreme == "huge_scales":
        log_scales[:] = 60.0
    else:
        logits[:] = [1e4, -1e4]
    params = np.concatenate([logits, means.ravel(), log_scales.ravel(), coefficients.ravel()])[None]
    params = tf.constant(np.repeat(params, 4, 0).astype(np.float32))
    pixels = tf.constant([[0, 0, 0], [255, 255, 255], [0, 128, 255], [17, 200, 3]])
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = -tf.reduce_sum(head.log_prob(params, pixels))
    gradient = tape.gradient(loss, params)
    assert np.isfinite(loss.numpy())
    assert np.all(np.isfinite(gradient.numpy()))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_samples_follow_the_distribution(temperature):
    # One grayscale pixel, three components: the histogram of many draws matches exp(log_prob) at T = 1, and a
    # temperature != 1 changes it (so the check has power).
    head = DiscretizedLogisticMixtureHead(num_mixtures=3, channels=1)
    params = np.array([[0.3, -0.2, 0.5, -0.6, 0.1, 0.9, -3.0, -2.5, -1.8]], np.float32)
    n = 200_000
    uniforms = tf.random.stateless_uniform([n, 2], seed=[1, 2])
    draws = head.sample(tf.constant(np.repeat(params, n, 0)), uniforms, temperature).numpy()[:, 0]
    histogram = np.bincount(draws, minlength=256) / n
    probs = np.exp(head.log_prob(tf.constant(np.repeat(params, 256, 0)), tf.range(256)[:, None]).numpy())
    total_variation = 0.5 * np.abs(histogram - probs).sum()
    if temperature == 1.0:
        assert total_variation < 0.02
    else:
        assert total_variation > 0.05


def test_rgb_samples_couple_channels_like_log_prob():
    # Strong coupling: G follows R. Sampled G minus R is small only if coefficients are applied to drawn R.
    head = DiscretizedLogisticMixtureHead(num_mixtures=1, channels=3)
    # logit | means R,G,B | log_scales | coefficients (G on R, B on R, B on G) before tanh
    params = np.array([[0.0, 0.0, -1.0, -1.0, 0.0, -5.0, -5.0, 10.0, 0.0, 0.0]], np.float32)
    n = 20_000
    draws = head.sample(tf.constant(np.repeat(params, n, 0)), tf.random.stateless_uniform([n, 4], [3, 4])).numpy()
    # mu'_G = -1 + tanh(10) * x_R ~ x_R - 1 in [-1, 1] units: G ~ R - 127.5 (clipped at 0).
    expected_g = np.clip(np.round(draws[:, 0] - 127.5), 0, 255)
    assert np.mean(np.abs(draws[:, 1] - expected_g) <= 3) > 0.95
    assert draws[:, 0].std() > 30  # R itself is spread out


def test_categorical_head_normalizes_and_samples():
    head = CategoricalHead()
    logits = tf.constant(np.random.RandomState(0).randn(1, 256).astype(np.float32) * 2)
    probs = np.exp(head.log_prob(tf.repeat(logits, 256, 0), tf.range(256)[:, None]).numpy())
    assert abs(probs.sum() - 1.0) < 1e-5
    n = 100_000
    draws = head.sample(tf.repeat(logits, n, 0), tf.random.stateless_uniform([n, 1], [5, 6])).numpy()[:, 0]
    assert 0.5 * np.abs(np.bincount(draws, minlength=256) / n - probs).sum() < 0.03

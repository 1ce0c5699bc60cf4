"""The attention kernel's hand-written backward pass equals automatic differentiation of its formula."""

import numpy as np
import pytest
import tensorflow as tf

from imagetransformer.layers.attention import dot_product_attention, masking_bias


def _reference(q, k, v, bias):
    return tf.matmul(tf.nn.softmax(tf.matmul(q, k, transpose_b=True) + bias), v)


@pytest.mark.parametrize("dtype,tolerance", [(tf.float64, 1e-10), (tf.float32, 1e-5)])
def test_gradients_match_autodiff(dtype, tolerance):
    rng = np.random.RandomState(0)
    q, k, v = (tf.constant(rng.randn(2, 3, 2, 5, 4), dtype) for _ in range(3))  # [b, h, blocks, len, depth]
    mask = rng.rand(2, 5, 5) < 0.6  # [blocks, query, memory]
    mask[..., 0] = True  # every query sees something, as in the model
    bias = masking_bias(mask, dtype)
    upstream = tf.constant(rng.randn(2, 3, 2, 5, 4), dtype)

    def gradients(fn):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            loss = tf.reduce_sum(fn(q, k, v, bias) * upstream)
        return tape.gradient(loss, [q, k, v])

    np.testing.assert_allclose(dot_product_attention(q, k, v, bias), _reference(q, k, v, bias), atol=tolerance)
    for ours, reference in zip(gradients(dot_product_attention), gradients(_reference)):
        assert float(tf.reduce_max(tf.abs(reference))) > 0.1  # a gradient worth comparing
        np.testing.assert_allclose(ours, reference, atol=tolerance)


def test_masked_keys_get_no_weight_and_no_gradient():
    rng = np.random.RandomState(1)
    q, k, v = (tf.constant(rng.randn(1, 1, 1, 3, 2), tf.float32) for _ in range(3))
    causal = np.tril(np.ones([3, 3], bool))
    with tf.GradientTape() as tape:
        tape.watch([k, v])
        out = dot_product_attention(q[..., :1, :], k, v, masking_bias(causal[:1], tf.float32))  # query 0
        loss = tf.reduce_sum(out)
    d_k, d_v = tape.gradient(loss, [k, v])
    np.testing.assert_allclose(out[..., 0, :], v[..., 0, :], atol=1e-6)  # sees only key 0
    np.testing.assert_array_equal(d_k[..., 1:, :], 0.0)
    np.testing.assert_array_equal(d_v[..., 1:, :], 0.0)

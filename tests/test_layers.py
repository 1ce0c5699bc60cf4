"""Every layer (Image Transformer and PixelCNN++) through the same checks: build, output shape, config round trip, `.keras` save/load (safe mode)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from imagetransformer.heads import CategoricalHead, DiscretizedLogisticMixtureHead
from imagetransformer.layers import (
    CrossAttention,
    DecoderBlock,
    EncoderBlock,
    GatedResnet,
    GlobalSelfAttention,
    LocalSelfAttention1D,
    LocalSelfAttention2D,
    LowResEmbedding,
    PixelEmbedding,
    ShiftedConv2D,
    ShiftedConv2DTranspose,
)

HIDDEN = 8
LENGTH = 16  # a 4x4 grid

LAYERS = {
    "global_attention": (lambda: GlobalSelfAttention(num_heads=2), (2, LENGTH, HIDDEN), "float32"),
    "local_1d": (lambda: LocalSelfAttention1D(2, block_length=4, memory_length=3), (2, LENGTH, HIDDEN), "float32"),
    "local_2d": (
        lambda: LocalSelfAttention2D(2, grid_shape=(4, 4), query_shape=(2, 2), memory_flange=(1, 1)),
        (2, LENGTH, HIDDEN), "float32",
    ),
    "decoder_block": (
        lambda: DecoderBlock(LocalSelfAttention1D(2, 4, 4), filter_size=12, dropout=0.1), (2, LENGTH, HIDDEN), "float32",
    ),
    "embedding_pixels": (lambda: PixelEmbedding((4, 4, 3), HIDDEN, subpixels=False), (2, LENGTH, 3), "int32"),
    "embedding_subpixels": (
        lambda: PixelEmbedding((4, 4, 3), HIDDEN, subpixels=True, query_shape=(2, 6)), (2, 3 * LENGTH, 1), "int32",
    ),
    # Super-resolution encoder.
    "encoder_block": (lambda: EncoderBlock(num_heads=2, filter_size=12, dropout=0.1), (2, 4, HIDDEN), "float32"),
    "low_res_embedding": (lambda: LowResEmbedding((2, 2, 3), HIDDEN), (2, 2, 2, 3), "int32"),
    "dmol_head": (lambda: DiscretizedLogisticMixtureHead(num_mixtures=3, channels=3), (2, LENGTH, HIDDEN), "float32"),
    "categorical_head": (lambda: CategoricalHead(), (2, LENGTH, HIDDEN), "float32"),
    # PixelCNN++ (images [batch, 4, 4, channels]).
    "shifted_conv_down": (lambda: ShiftedConv2D(6, (2, 3), "down"), (2, 4, 4, HIDDEN), "float32"),
    "shifted_conv_down_right_strided": (
        lambda: ShiftedConv2D(6, (2, 2), "down_right", strides=2), (2, 4, 4, HIDDEN), "float32",
    ),
    "shifted_conv_transpose_down": (
        lambda: ShiftedConv2DTranspose(6, (2, 3), "down", strides=2), (2, 4, 4, HIDDEN), "float32",
    ),
    "shifted_conv_transpose_down_right": (
        lambda: ShiftedConv2DTranspose(6, (2, 2), "down_right", strides=2), (2, 4, 4, HIDDEN), "float32",
    ),
    "gated_resnet": (lambda: GatedResnet("down_right", dropout=0.1), (2, 4, 4, HIDDEN), "float32"),
}


def _input(shape, dtype):
    rng = np.random.RandomState(1)
    if dtype == "int32":
        return rng.randint(0, 256, shape).astype(np.int32)
    return rng.randn(*shape).astype(np.float32)


@pytest.fixture(params=sorted(LAYERS))
def layer_case(request):
    factory, shape, dtype = LAYERS[request.param]
    return factory, _input(shape, dtype)


def test_output_shape_matches_compute_output_shape(layer_case):
    factory, x = layer_case
    layer = factory()
    y = layer(x)
    if not isinstance(layer, (DiscretizedLogisticMixtureHead, CategoricalHead)):
        assert tuple(y.shape) == tuple(layer.compute_output_shape(x.shape))
    assert np.all(np.isfinite(y.numpy()))


def test_config_round_trip_gives_identical_outputs(layer_case):
    factory, x = layer_case
    layer = factory()
    expected = layer(x)
    clone = layer.__class__.from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), expected, rtol=1e-6, atol=1e-6)
    assert clone.get_config() == layer.get_config()


def test_saved_in_keras_file_and_loaded_in_safe_mode(layer_case, tmp_path):
    factory, x = layer_case
    inputs = keras.Input(shape=x.shape[1:], dtype=x.dtype.name)
    model = keras.Model(inputs, factory()(inputs))
    expected = model(x)
    path = os.path.join(tmp_path, "layer.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded(x), expected, rtol=1e-6, atol=1e-6)


def test_attention_rejects_hidden_size_not_divisible_by_heads():
    with pytest.raises(ValueError, match="num_heads"):
        GlobalSelfAttention(num_heads=3)(np.zeros((1, 4, 8), np.float32))


def test_local_1d_rejects_block_length_that_does_not_divide():
    with pytest.raises(ValueError, match="block_length=5"):
        LocalSelfAttention1D(2, block_length=5, memory_length=2)(np.zeros((1, 16, 8), np.float32))


def test_local_2d_rejects_query_shape_that_does_not_divide():
    with pytest.raises(ValueError, match="query_shape"):
        LocalSelfAttention2D(2, grid_shape=(4, 4), query_shape=(3, 2), memory_flange=(1, 1))


def test_cross_attention_equals_keras_multi_head_attention_and_its_gradients():
    rng = np.random.RandomState(0)
    x, memory = rng.randn(2, 5, HIDDEN).astype(np.float32), rng.randn(2, 7, HIDDEN).astype(np.float32)
    reference = keras.layers.MultiHeadAttention(num_heads=2, key_dim=HIDDEN // 2)
    reference(x, memory)
    layer = CrossAttention(num_heads=2)
    layer.build(x.shape)
    for ours, theirs in ((layer.query_dense, reference._query_dense), (layer.key_dense, reference._key_dense),
                         (layer.value_dense, reference._value_dense), (layer.output_dense, reference._output_dense)):
        ours.set_weights([w + rng.randn(*w.shape).astype(np.float32) * 0.1 for w in theirs.get_weights()])
        theirs.set_weights(ours.get_weights())  # random biases too
    x, memory = tf.constant(x), tf.constant(memory)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, memory])
        ours = layer(x, layer.memory_keys_values(memory))
        theirs = reference(x, memory)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    for wrt in (x, memory):
        np.testing.assert_allclose(tape.gradient(ours, wrt), tape.gradient(theirs, wrt), rtol=1e-4, atol=1e-5)

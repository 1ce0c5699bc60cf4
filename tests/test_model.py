"""ImageTransformer behaviour beyond the properties every variant shares (`test_model_properties.py`): generation
order, normalization at the edge bins, local == global, exactly which positions attention sees, errors, training."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import imagetransformer as it
from conftest import random_images, tiny_kwargs

ATTENTIONS = ("global", "local_1d", "local_2d")
HEADS = ("dmol", "categorical")


def sequence_params(model, tokens):
    """Head parameters in generation order `[B, length, P]` for tokens `[B, length, token]`."""
    return model.head(model.hidden_states(tokens, training=False)).numpy()


# ------------------------------------------------------------------------------------------------------------------
# Generation order
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("distribution", HEADS)
def test_local_2d_generation_order_is_block_raster(distribution):
    model = it.ImageTransformer(**tiny_kwargs("local_2d", distribution, image_shape=(4, 4, 1),
                                              query_shape=(2, 2), memory_flange=(1, 1)))
    rows, cols = model.order.grid_coordinates()
    # The first block (rows 0-1, cols 0-1) is generated before the rest of row 0.
    assert list(zip(rows[:5], cols[:5])) == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2)]
    image = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    tokens = model.order.to_sequence(image).numpy()[0, :, 0]
    assert tokens[:5].tolist() == [0, 1, 4, 5, 2]
    np.testing.assert_array_equal(model.order.to_images(model.order.to_sequence(image)), image)


# ------------------------------------------------------------------------------------------------------------------
# Exact normalization where DMoL's tails are
# ------------------------------------------------------------------------------------------------------------------
def _two_pixel_model(attention, distribution, **overrides):
    # 1x2x1 images: 2 positions; blocks of one position with one position of memory.
    return it.ImageTransformer(**tiny_kwargs(
        attention, distribution, image_shape=(1, 2, 1), block_length=1, memory_length=1, query_shape=(1, 1),
        memory_flange=(0, 1), **overrides,
    ))


def _all_two_pixel_images():
    values = np.arange(256, dtype=np.uint8)
    return np.stack(np.meshgrid(values, values, indexing="ij"), -1).reshape(-1, 1, 2, 1)


def _total_probability(model):
    log_probs = np.concatenate([model.log_prob(chunk).numpy() for chunk in np.split(_all_two_pixel_images(), 4)])
    return np.exp(log_probs.astype(np.float64)).sum(), log_probs


@pytest.mark.parametrize("distribution", HEADS)
def test_probabilities_sum_to_one_after_fitting_edge_values(distribution):
    # Images of only 0s and 255s push all mass into the edge bins, where DMoL's tails are.
    model = _two_pixel_model("global", distribution)
    rng = np.random.RandomState(0)
    images = (rng.randint(0, 2, (256, 1, 2, 1)) * 255).astype(np.uint8)
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    model.fit(images, batch_size=64, epochs=15, verbose=0)
    total, log_probs = _total_probability(model)
    assert abs(total - 1.0) < 1e-4
    edge = np.isin(_all_two_pixel_images().reshape(-1, 2), [0, 255]).all(axis=1)
    assert np.exp(log_probs[edge].astype(np.float64)).sum() > 0.9  # it did learn the edge images


# ------------------------------------------------------------------------------------------------------------------
# Local attention with blocks covering the image equals global attention
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("distribution", HEADS)
@pytest.mark.parametrize("attention", ["local_1d", "local_2d"])
def test_local_attention_covering_the_image_equals_global(attention, distribution):
    image_shape = (4, 4, 3)
    cols = 12 if distribution == "categorical" else 4
    covering = dict(block_length=4 * cols, memory_length=7, query_shape=(4, cols), memory_flange=(2, 3))
    local = it.ImageTransformer(**tiny_kwargs(attention, distribution, image_shape, **covering))
    reference = it.ImageTransformer(**tiny_kwargs("global", distribution, image_shape, **covering))
    reference.set_weights(local.get_weights())
    images = random_images(3, image_shape)
    np.testing.assert_allclose(local(images), reference(images), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(local.log_prob(images), reference.log_prob(images), rtol=1e-5)


def test_local_1d_sees_exactly_its_block_and_memory():
    # 16 positions, blocks of 4, memory 3: position 9 (block 2) sees positions 5..9 and nothing before 5.
    model = it.ImageTransformer(**tiny_kwargs("local_1d", "dmol", (4, 4, 1), num_layers=1, block_length=4,
                                              memory_length=3))
    tokens = model.order.to_sequence(random_images(1, (4, 4, 1))).numpy().astype(np.int32)
    base = sequence_params(model, tokens)
    for source, visible in ((4, False), (5, True)):
        # The input at position p carries the value of position p - 1.
        changed = tokens.copy()
        changed[:, source - 1] = (changed[:, source - 1] + 101) % 256
        moved = np.abs(sequence_params(model, changed)[:, 9] - base[:, 9]).max() > 1e-5
        assert moved == visible, (source, moved)


def test_local_2d_sees_exactly_its_memory_region():
    # 8x8 grid, query blocks 2x2, flange (1 row above, 1 col each side). The query at grid (4, 4) (block at
    # rows 4-5, cols 4-5) sees rows 3..5 and cols 3..6 where generated; not (4, 6) (later), not (2, 4) (too high).
    kwargs = tiny_kwargs("local_2d", "dmol", (8, 8, 1), num_layers=1, query_shape=(2, 2), memory_flange=(1, 1))
    model = it.ImageTransformer(**kwargs)
    order = model.order
    rows, cols = order.grid_coordinates()
    index = {(r, c): i for i, (r, c) in enumerate(zip(rows, cols))}
    query = index[(4, 4)]
    tokens = order.to_sequence(random_images(1, (8, 8, 1))).numpy().astype(np.int32)
    base = sequence_params(model, tokens)[:, query]
    # A value at position p enters the network as the input at the next position in generation order.
    for cell, visible in (((3, 6), True), ((3, 3), True), ((4, 3), True), ((2, 4), False), ((3, 7), False)):
        source = index[cell] + 1
        changed = tokens.copy()
        changed[:, source - 1] = (changed[:, source - 1] + 101) % 256
        moved = np.abs(sequence_params(model, changed)[:, query] - base).max() > 1e-5
        # The input at source is the value of the cell before `source` in order; check the cell whose input it is.
        input_cell = (rows[source], cols[source])
        expected = _in_window(input_cell, (4, 4), (2, 2), (1, 1)) and source <= query
        assert moved == expected, (cell, input_cell, moved)


def _in_window(cell, query_cell, query_shape, flange):
    (r, c), (qr, qc), (qh, qw), (fh, fw) = cell, query_cell, query_shape, flange
    top, left = (qr // qh) * qh - fh, (qc // qw) * qw - fw
    return top <= r < (qr // qh) * qh + qh and left <= c < (qc // qw) * qw + qw + fw


# ------------------------------------------------------------------------------------------------------------------
# Configuration errors
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(attention="sparse"), "attention='sparse'.*local_1d, local_2d, global"),
        (dict(distribution="gaussian"), "distribution='gaussian'.*dmol, categorical"),
        (dict(image_shape=(4, 4, 2)), "image_shape.*channels 1.*or 3"),
        (dict(hidden_size=18, num_heads=4), "hidden_size=18.*num_heads=4"),
        (dict(attention="local_1d", block_length=5), "block_length=5.*divide"),
        (dict(attention="local_1d", block_length=0), "block_length=0"),
        (dict(attention="local_2d", query_shape=(3, 2)), "query_shape=\\(3, 2\\).*divide"),
        (dict(attention="local_2d", query_shape=(2,)), "query_shape"),
        (dict(dropout=1.5), "dropout"),
        (dict(num_layers=0), "num_layers"),
    ],
)
def test_configuration_errors_name_the_argument(overrides, match):
    with pytest.raises(ValueError, match=match):
        it.ImageTransformer(**tiny_kwargs(**overrides))


def test_wrong_image_shape_is_refused():
    model = it.ImageTransformer(**tiny_kwargs(image_shape=(4, 4, 3)))
    with pytest.raises(ValueError, match=r"\[batch, 4, 4, 3\]"):
        model(np.zeros((1, 4, 5, 3), np.uint8))
    with pytest.raises(TypeError, match="integer"):
        model.log_prob(np.zeros((1, 4, 4, 3), np.float32))


# ------------------------------------------------------------------------------------------------------------------
# Saving and training
# ------------------------------------------------------------------------------------------------------------------
def test_fit_without_targets_lowers_bits_per_dim():
    model = it.ImageTransformer(**tiny_kwargs("local_1d", "dmol", image_shape=(4, 4, 1), block_length=4,
                                              memory_length=4))
    # Structured data: a bright left half and a dark right half, with noise.
    rng = np.random.RandomState(0)
    images = np.concatenate([rng.randint(180, 256, (128, 4, 2, 1)), rng.randint(0, 60, (128, 4, 2, 1))], axis=2)
    images = images.astype(np.uint8)
    before = float(np.mean(model.bits_per_dim(images)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(images, batch_size=32, epochs=8, verbose=0)
    after = float(np.mean(model.bits_per_dim(images)))
    assert set(history.history) == {"loss", "bits_per_dim"}
    # Loss is nats/dim; the metric is the same quantity in bits.
    np.testing.assert_allclose(history.history["bits_per_dim"][-1], history.history["loss"][-1] / math.log(2), rtol=1e-4)
    assert after < before - 1.0
    evaluated = model.evaluate(images, batch_size=64, verbose=0, return_dict=True)
    np.testing.assert_allclose(evaluated["bits_per_dim"], after, rtol=1e-4)


def test_mixed_precision_keeps_the_head_in_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = it.ImageTransformer(**tiny_kwargs("local_1d", "dmol"))
        images = random_images(2, model.image_shape)
        params = model(images)
        assert params.dtype == tf.float32
        assert model.decoder_blocks[0].attention.compute_dtype == "bfloat16"
        assert np.all(np.isfinite(model.log_prob(images).numpy()))
    finally:
        keras.mixed_precision.set_global_policy("float32")

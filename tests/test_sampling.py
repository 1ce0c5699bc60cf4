"""Cached and naive decoding: equal to teacher forcing, equal to each other, and faithful to the model."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import imagetransformer as it
from imagetransformer.generation import sampling
from conftest import random_images, tiny_kwargs

CASES = list(itertools.product(("global", "local_1d", "local_2d"), ("dmol", "categorical")))


def _model(attention, distribution, image_shape=(4, 4, 3)):
    kwargs = tiny_kwargs(attention, distribution, image_shape)
    cols = image_shape[1] * (image_shape[2] if distribution == "categorical" else 1)
    # Blocks smaller than the image so that caches are windowed and flanges matter.
    kwargs.update(block_length=cols, memory_length=cols - 1, query_shape=(2, cols // 2), memory_flange=(1, 1))
    return it.ImageTransformer(**kwargs)


@pytest.mark.parametrize("attention,distribution", [c for c in CASES if c[0] != "local_2d"])
def test_xla_step_parameters_equal_teacher_forcing_from_a_prefill_ending_mid_block(attention, distribution):
    """The in-process XLA step loop after a 1-row prefill: for local_1d with blocks of 2 rows the prefill covers half
    a block and is rounded up to a whole one. (local_2d completes whole query blocks; the plain-graph loop from 0
    and 2 known rows runs for every variant in `test_model_properties.py`.)"""
    known_rows = 1
    model = _model(attention, distribution)
    if attention == "local_1d":
        model = it.ImageTransformer(**{**model.get_config(), "block_length": 2 * model.order.grid_shape[1]})
    images = random_images(2, model.image_shape)
    completed, step_params = it.complete(model, images, known_rows, seed=7, return_params=True)
    teacher_forced = model(completed).numpy()
    generated = step_params.numpy()[:, known_rows:]
    np.testing.assert_allclose(generated, teacher_forced[:, known_rows:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("attention,distribution", CASES)
def test_bfloat16_caches_stay_close_to_teacher_forcing(attention, distribution):
    """Key/value caches in bfloat16 (what the exported signatures decode with): the caches really are bfloat16,
    the step parameters stay float32 and within bfloat16 rounding of the teacher-forced ones."""
    model = _model(attention, distribution)
    images = random_images(2, model.image_shape)
    known_rows = 2
    decoder = sampling.get_decoder(model, jit_compile=False, cache_dtype="bfloat16")
    state = decoder.cached.init_state(model.order.to_sequence(tf.cast(images, tf.int32)),
                                      model.order.known_length(known_rows))
    assert {t.dtype for t in tf.nest.flatten(state["layers"])} == {tf.bfloat16}
    completed, step_params = it.complete(model, images, known_rows, seed=7, return_params=True,
                                         jit_compile=False, cache_dtype="bfloat16")
    assert step_params.dtype == tf.float32
    teacher_forced = model(completed).numpy()[:, known_rows:]
    generated = step_params.numpy()[:, known_rows:]
    np.testing.assert_allclose(generated, teacher_forced, rtol=0.05, atol=0.05)
    assert np.abs(generated - teacher_forced).max() > 1e-6  # the caches really were rounded


def test_cache_dtype_must_be_floating():
    model = _model("local_1d", "dmol")
    with pytest.raises(ValueError, match="cache_dtype must be a floating dtype"):
        it.complete(model, random_images(1, model.image_shape), 2, cache_dtype="int32")


@pytest.mark.parametrize("attention,distribution,stem", [("global", "dmol", 0), ("local_1d", "dmol", 0), ("local_2d", "dmol", 0),
                                                        ("global", "categorical", 0), ("local_1d", "dmol", 2)])
def test_graph_decoding_writes_caches_in_place_and_equals_xla_decoding(attention, distribution, stem):
    """Without XLA the step loop writes its caches in place (what TF Serving runs); it must compute exactly what
    the functional XLA loop computes, and never write into the tensors it was given."""
    model = _model(attention, distribution)
    if stem:
        model = it.ImageTransformer(**{**model.get_config(), "conv_stem_layers": stem, "conv_stem_kernel": (1, 1)})
    images = random_images(2, model.image_shape)
    known_rows = 2
    xla, xla_params = it.complete(model, images, known_rows, seed=5, return_params=True, jit_compile=True)
    graph, graph_params = it.complete(model, images, known_rows, seed=5, return_params=True, jit_compile=False)
    np.testing.assert_array_equal(graph.numpy(), xla.numpy())
    np.testing.assert_allclose(graph_params.numpy()[:, known_rows:], xla_params.numpy()[:, known_rows:],
                               rtol=1e-5, atol=1e-5)

    decoder = sampling.get_decoder(model, jit_compile=False)
    tokens = model.order.to_sequence(tf.cast(images, tf.int32))
    known = model.order.known_length(known_rows)
    state = decoder.cached.init_state(tokens, known)
    before = tf.nest.map_structure(lambda t: t.numpy().copy(), state)
    noise = decoder.noise(sampling.per_image_seeds(5, 2))
    args = ([tokens], [state], tf.constant(known), tf.constant(model.order.length), [noise], [tf.ones([2])], [None])
    decode = decoder._decode_fns["cached"]  # pylint: disable=protected-access (one group of images)
    first = decode(*args)[0][0].numpy()
    tf.nest.map_structure(np.testing.assert_array_equal, tf.nest.map_structure(lambda t: t.numpy(), state), before)
    np.testing.assert_array_equal(decode(*args)[0][0].numpy(), first)  # the same inputs, the same images
    ops = {node.op for f in decode.get_concrete_function(*args).graph.as_graph_def().library.function
           for node in f.node_def}
    assert "InplaceUpdate" in ops  # the caches' writes (only the small token canvas is scattered)


@pytest.mark.parametrize("attention,stem,jit_compile", [("local_1d", 2, True), ("local_1d", 2, False),
                                                        ("local_2d", 0, False), ("global", 0, False)])
def test_groups_of_images_decoded_side_by_side_equal_one_loop(attention, stem, jit_compile):
    """`parallel_loops` cuts the batch into groups decoded by independent loops: uneven groups (3 images in 2) and a
    stem state whose batch is not its first axis give exactly one loop's images and step parameters."""
    model = _model(attention, "dmol")
    if stem:
        model = it.ImageTransformer(**{**model.get_config(), "conv_stem_layers": stem, "conv_stem_kernel": (1, 1)})
    images = random_images(3, model.image_shape)
    kwargs = dict(seed=[3, 4, 5], return_params=True, jit_compile=jit_compile)
    one, one_params = it.complete(model, images, 2, parallel_loops=1, **kwargs)
    two, two_params = it.complete(model, images, 2, parallel_loops=2, **kwargs)
    np.testing.assert_array_equal(two.numpy(), one.numpy())
    np.testing.assert_allclose(two_params.numpy()[:, 2:], one_params.numpy()[:, 2:], rtol=1e-5, atol=1e-5)

    # Two groups, each with its own prefill and its own loop: two calls of the loop function.
    decoder = sampling.get_decoder(model, jit_compile=jit_compile, parallel_loops=2)
    tokens = sampling.split_batch(model.order.to_sequence(tf.cast(images, tf.int32)), [2, 1])
    states = decoder._prefill_fns["cached"](tokens, model.order.known_length(2), [None, None])  # pylint: disable=protected-access
    assert [state["layers"][0]["keys"].shape[0] for state in states] == [2, 1]
    noise = sampling.split_batch(decoder.noise(sampling.per_image_seeds(3, 3)), [2, 1])
    args = (tokens, states, tf.constant(8), tf.constant(model.order.length), noise, [tf.ones([2]), tf.ones([1])],
            [None, None])
    graph = decoder._decode_fns["cached"].get_concrete_function(*args).graph  # pylint: disable=protected-access
    ops = [node.op for node in graph.as_graph_def().node]
    assert ops.count("StatefulPartitionedCall") + ops.count("PartitionedCall") == 2


def test_parallel_loops_must_be_a_positive_integer():
    model = _model("local_1d", "dmol")
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="parallel_loops must be a positive integer"):
            it.complete(model, random_images(1, model.image_shape), 2, parallel_loops=bad)


def test_complete_keeps_known_rows_and_reproduces_with_a_seed():
    model = _model("local_1d", "dmol")
    images = random_images(3, model.image_shape)
    first = it.complete(model, images, known_rows=2, seed=11)
    assert first.dtype == tf.uint8 and tuple(first.shape) == images.shape
    np.testing.assert_array_equal(first[:, :2], images[:, :2])
    np.testing.assert_array_equal(it.complete(model, images, known_rows=2, seed=11), first)
    assert np.any(it.complete(model, images, known_rows=2, seed=12).numpy() != first.numpy())
    # The unknown rows of the input are never read.
    scrambled = images.copy()
    scrambled[:, 2:] = 255 - scrambled[:, 2:]
    np.testing.assert_array_equal(it.complete(model, scrambled, known_rows=2, seed=11), first)


def test_an_image_depends_only_on_its_own_seed():
    model = _model("local_2d", "dmol")
    images = random_images(3, model.image_shape)
    batch = it.complete(model, images, known_rows=2, seed=[5, 6, 7]).numpy()
    alone = it.complete(model, images[1:2], known_rows=2, seed=[6]).numpy()
    np.testing.assert_array_equal(batch[1:2], alone)


def test_sample_returns_uint8_images_and_differs_across_the_batch():
    model = _model("global", "categorical")
    samples = it.sample(model, batch_size=3, seed=0)
    assert samples.dtype == tf.uint8 and tuple(samples.shape) == (3, *model.image_shape)
    assert len({s.tobytes() for s in samples.numpy()}) == 3


@pytest.mark.parametrize(
    "attention,known_rows,match",
    [("local_1d", -1, "known_rows=-1"), ("local_1d", 5, "known_rows=5"), ("local_2d", 1, "multiple of the query")],
)
def test_bad_known_rows_is_refused(attention, known_rows, match):
    model = _model(attention, "dmol")
    with pytest.raises(ValueError, match=match):
        it.complete(model, random_images(1, model.image_shape), known_rows)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_bad_temperature_is_refused(temperature):
    model = _model("global", "dmol")
    with pytest.raises(ValueError, match="temperature"):
        it.complete(model, random_images(1, model.image_shape), 2, temperature=temperature)


def test_wrong_images_are_refused():
    model = _model("global", "dmol")
    with pytest.raises(ValueError, match=r"\[batch, 4, 4, 3\]"):
        it.complete(model, random_images(1, (4, 5, 3)), 2)
    with pytest.raises(TypeError, match="integer"):
        it.complete(model, np.zeros((1, 4, 4, 3), np.float32), 2)


def _marginals(model):
    values = np.arange(256)
    grid = np.stack(np.meshgrid(values, values, indexing="ij"), -1).reshape(-1, 1, 2, 1).astype(np.uint8)
    joint = np.exp(np.concatenate([model.log_prob(c).numpy() for c in np.split(grid, 4)]).astype(np.float64))
    joint = joint.reshape(256, 256)
    return joint.sum(1), joint.sum(0)


@pytest.mark.parametrize("distribution", ["dmol", "categorical"])
def test_samples_follow_the_models_exact_distribution(distribution):
    # A 1x2x1 model fitted to peaked data, so that a 15% error in the scales (temperature 1.15) is visible.
    model = it.ImageTransformer(**tiny_kwargs("global", distribution, (1, 2, 1)))
    rng = np.random.RandomState(0)
    first = np.clip(rng.normal(80, 12, 2048), 0, 255)
    data = np.stack([first, np.clip(first + rng.normal(30, 6, 2048), 0, 255)], -1).reshape(-1, 1, 2, 1)
    model.compile(optimizer=keras.optimizers.Adam(0.03))
    model.fit(data.astype(np.uint8), batch_size=128, epochs=12, verbose=0)
    exact = _marginals(model)

    def total_variation(temperature, cache_dtype=None):
        samples = it.sample(model, batch_size=60_000, seed=1, temperature=temperature,
                            cache_dtype=cache_dtype).numpy().reshape(-1, 2)
        return max(0.5 * np.abs(np.bincount(samples[:, i], minlength=256) / len(samples) - exact[i]).sum()
                   for i in range(2))

    faithful, distorted = total_variation(1.0), total_variation(1.15)
    assert faithful < 0.02, faithful
    assert distorted > 0.03, distorted
    # bfloat16 caches (`cache_dtype`, an export option): still the model's distribution, as far as 60,000 samples tell.
    bfloat16 = total_variation(1.0, "bfloat16")
    assert bfloat16 < 0.02, bfloat16

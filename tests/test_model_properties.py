"""The properties every model variant must have (`tests/harness.py`: every attention and head of the Image
Transformer, unconditional, class-conditional and super-resolution, and PixelCNN++): causality, the condition
reaching every prediction, exact normalization, cached decoding == teacher forcing == the naive decoder, and the
`.keras` round trip in safe mode."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import imagetransformer as it
from conftest import random_images
from harness import VARIANTS


def _inputs(images, condition):
    """What the model is called on: images, or `{"images": ..., "labels" | "low_res": ...}`."""
    return {"images": images, **condition} if condition else images


def _condition_value(condition):
    """The one condition tensor of `condition` ({} -> None), as `sequence_params(condition=...)` takes it."""
    return tf.constant(next(iter(condition.values()))) if condition else None


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_changing_one_position_changes_no_prediction_at_or_before_it(variant):
    model = variant.make()
    condition = variant.condition_inputs(model, 2, 0)
    tokens = model.order.to_sequence(random_images(2, model.image_shape)).numpy().astype(np.int32)
    base = model.sequence_params(tf.constant(tokens), condition=_condition_value(condition)).numpy()
    length = model.order.length
    # Every position, or (PixelCNN++'s 64 pixels) 24 spread over the image, rows' ends included.
    for position in sorted(set(np.linspace(0, length - 2, min(length - 1, 24)).round().astype(int))):
        changed = tokens.copy()
        changed[:, position] = (changed[:, position] + 97) % 256
        params = model.sequence_params(tf.constant(changed), condition=_condition_value(condition)).numpy()
        np.testing.assert_array_equal(params[:, : position + 1], base[:, : position + 1], err_msg=f"{position=}")
        later = np.abs(params[:, position + 1 :] - base[:, position + 1 :]).max(axis=-1)  # [B, later positions]
        assert later.max() > 1e-5, f"no later position sees position {position}"
        if variant.next_position_sees_the_last:
            assert later[:, 0].min() > 1e-5, f"position {position + 1} does not see position {position}"


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.conditional], ids=str)
def test_the_condition_changes_every_prediction(variant):
    model = variant.make()
    tokens = tf.constant(model.order.to_sequence(random_images(2, model.image_shape)).numpy().astype(np.int32))
    base = model.sequence_params(tokens, condition=_condition_value(variant.condition_inputs(model, 2, 0))).numpy()
    other = model.sequence_params(tokens, condition=_condition_value(variant.condition_inputs(model, 2, 1))).numpy()
    # Every position, the first included (which sees no pixel), depends on the condition.
    assert np.abs(other - base).max(axis=-1).min() > 1e-5


def _all_pixel_pairs():
    values = np.arange(256, dtype=np.uint8)
    return np.stack(np.meshgrid(values, values, indexing="ij"), -1).reshape(-1, 2)  # [65536, 2]


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_probabilities_sum_to_one(variant):
    """Every image of the enumerable model's `R x 2 x 1` shape, its last row ranging over all 65,536 pixel pairs:
    `sum exp(log p(image)) = p(first R-1 rows)` (1 for a one-row image), for two values of the condition."""
    model = variant.make_enumerable()
    rows = model.image_shape[0]
    pairs = _all_pixel_pairs()
    for seed in ((0, 1) if variant.conditional or rows > 1 else (0,)):
        condition = {k: np.repeat(v, len(pairs), axis=0) for k, v in variant.condition_inputs(model, 1, seed).items()}
        images = np.zeros((len(pairs), *model.image_shape), np.uint8)
        images[:, :-1] = np.random.RandomState(seed).randint(0, 256, (1, rows - 1, 2, 1))  # the same first rows
        images[:, -1] = pairs[..., None]
        log_probs = np.concatenate([
            model.log_prob(images[i : i + 16384], **{k: v[i : i + 16384] for k, v in condition.items()}).numpy()
            for i in range(0, len(pairs), 16384)]).astype(np.float64)
        assert np.all(np.isfinite(log_probs))
        # log p(first rows): their per-pixel terms, which (causality) do not depend on the last row.
        first = {k: v[:1] for k, v in condition.items()}
        targets = model._targets(images[:1])  # pylint: disable=protected-access
        per_pixel = model.head.log_prob(model(_inputs(images[:1], first)), targets)  # [1, rows, ...]
        log_prefix = float(tf.reduce_sum(per_pixel[:, :-1]).numpy())
        np.testing.assert_allclose(np.exp(log_probs - log_prefix).sum(), 1.0, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_decoding_equals_teacher_forcing_and_the_naive_decoder(variant):
    """The step loop draws from the parameters teacher forcing gives for the images it produced: from no rows in
    plain graph mode (caches written in place, as the exported signatures run it), and from 2 known rows (which it
    keeps) compiled as `complete` compiles it by default. From 2 known rows it draws the same images as the naive
    decoder that re-runs the whole network for every position, from the same seeds (compiled alike: exact equality
    needs the same arithmetic, since a draw that lands within float rounding of a boundary between two intensities
    can go either way when two computations of the same parameters differ in their last bits)."""
    model = variant.make()
    images = random_images(2, model.image_shape)
    condition = variant.condition_inputs(model, 2, 0)
    for known_rows, jit_compile in ((0, False), (2, True)):
        if model.supports_cache:
            completed, step_params = it.complete(model, images, known_rows, seed=[1, 2], return_params=True,
                                                 jit_compile=jit_compile, **condition)
            forced = model(_inputs(completed.numpy(), condition)).numpy()
            np.testing.assert_allclose(step_params.numpy()[:, known_rows:], forced[:, known_rows:], rtol=1e-4,
                                       atol=1e-4, err_msg=f"{known_rows=}")
        else:
            completed = it.complete(model, images, known_rows, seed=[1, 2], jit_compile=jit_compile, **condition)
        np.testing.assert_array_equal(completed.numpy()[:, :known_rows], images[:, :known_rows])
    naive = it.complete(model, images, 2, seed=[1, 2], use_cache=False, **condition)
    np.testing.assert_array_equal(naive.numpy(), completed.numpy())


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_keras_file_round_trip_in_safe_mode(variant, tmp_path):
    model = variant.make()
    images = random_images(2, model.image_shape)
    condition = variant.condition_inputs(model, 2, 0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded(_inputs(images, condition)), model(_inputs(images, condition)))
    np.testing.assert_array_equal(loaded.log_prob(images, **condition), model.log_prob(images, **condition))


def _as_written_before_conditioners(weights_file):
    """Moves a conditioner's weights where files written before `conditioner` existed held them: the class
    embedding and the encoder's blocks and norm among the model's own layers, the low-resolution embedding under
    `layers/` (the first attribute that reached it then was `Model.layers`)."""
    import h5py  # pylint: disable=import-outside-toplevel

    with h5py.File(weights_file, "a") as f:
        moved = []
        for name in list(f["conditioner"]):
            if name != "vars":
                target = f"layers/{name}" if name == "low_res_embedding" else name
                f.move(f"conditioner/{name}", target)
                moved.append(target)
        del f["conditioner"]
    return moved


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.name in ("class-local_1d-dmol", "sr-local_2d-dmol")],
                         ids=str)
def test_weights_written_before_conditioners_load_and_score_identically(variant, tmp_path, monkeypatch):
    """Class-conditional and super-resolution models saved before their condition went through a `conditioner`
    layer (the shipped presets among them) load with `load_weights` and `load_model` as they are."""
    import zipfile  # pylint: disable=import-outside-toplevel

    model = variant.make()
    images = random_images(2, model.image_shape)
    condition = variant.condition_inputs(model, 2, 0)
    weights = os.path.join(tmp_path, "model.weights.h5")
    model.save_weights(weights)
    assert _as_written_before_conditioners(weights)
    fresh = variant.make()
    fresh.load_weights(weights)
    np.testing.assert_array_equal(fresh.log_prob(images, **condition), model.log_prob(images, **condition))
    # The same inside a .keras file, through keras.models.load_model.
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist() if name != "model.weights.h5"}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.write(weights, "model.weights.h5")
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.log_prob(images, **condition), model.log_prob(images, **condition))
    # Without the lookup the moved weights are not found: the test's file really has the old layout.
    monkeypatch.setattr(it.ImageTransformer, "load_own_variables", keras.Model.load_own_variables)
    with pytest.raises(ValueError, match="could not be loaded|expected"):
        variant.make().load_weights(weights)

"""Tests of imagetransformer.training.schedules: the paper's linear warm-up + inverse square root decay."""

import math

import keras
import numpy as np
import pytest

from imagetransformer.training.schedules import WarmupRsqrtDecay


def lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_linear_warmup_peak_then_rsqrt_decay():
    schedule = WarmupRsqrtDecay(peak_learning_rate=2e-3, warmup_steps=100)
    # Warm-up: update n = step + 1 gets peak * n / warmup.
    for step in (0, 1, 9, 49, 98):
        assert lr(schedule, step) == pytest.approx(2e-3 * (step + 1) / 100, rel=1e-5)
    warmup = [lr(schedule, s) for s in range(100)]
    assert np.all(np.diff(warmup) > 0)
    assert np.allclose(np.diff(warmup), 2e-3 / 100, rtol=1e-3)  # linear: constant increments
    # Peak at the warmup_steps-th update, the largest rate of all.
    assert lr(schedule, 99) == pytest.approx(2e-3, rel=1e-6)
    later = [lr(schedule, s) for s in range(99, 5000, 7)]
    assert max(later) == pytest.approx(2e-3, rel=1e-6)
    assert np.all(np.diff(later) < 0)
    # Decay: peak * sqrt(warmup / n); quadrupling the update number halves the rate.
    for step in (100, 399, 1000, 123_456):
        assert lr(schedule, step) == pytest.approx(2e-3 * math.sqrt(100 / (step + 1)), rel=1e-5)
    assert lr(schedule, 399) == pytest.approx(1e-3, rel=1e-5)
    assert lr(schedule, 1599) == pytest.approx(5e-4, rel=1e-5)


def test_no_warmup_starts_at_peak():
    for warmup in (0, 1):
        schedule = WarmupRsqrtDecay(1.0, warmup)
        assert lr(schedule, 0) == pytest.approx(1.0)
        assert lr(schedule, 3) == pytest.approx(0.5)
        assert lr(schedule, 99) == pytest.approx(0.1)


def test_works_on_tensors_and_in_an_optimizer():
    schedule = WarmupRsqrtDecay(1e-2, 10)
    steps = keras.ops.convert_to_tensor(np.arange(30), "int64")
    values = keras.ops.convert_to_numpy(schedule(steps))
    assert values.shape == (30,) and values.dtype == np.float32
    assert values[9] == pytest.approx(1e-2) and values.argmax() == 9

    variable = keras.Variable(np.ones(3, np.float32))
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    optimizer.build([variable])
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)  # step 0: peak / 10
    for _ in range(4):
        optimizer.apply_gradients([(keras.ops.ones(3), variable)])
    assert float(optimizer.learning_rate) == pytest.approx(5e-3)  # step 4: peak * 5 / 10


def test_serialization_round_trip():
    schedule = WarmupRsqrtDecay(peak_learning_rate=3e-4, warmup_steps=4000, name="paper")
    config = schedule.get_config()
    assert config == {"peak_learning_rate": 3e-4, "warmup_steps": 4000, "name": "paper"}
    assert WarmupRsqrtDecay.from_config(config).get_config() == config

    serialized = keras.saving.serialize_keras_object(schedule)
    assert serialized["registered_name"] == "imagetransformer>WarmupRsqrtDecay"
    restored = keras.saving.deserialize_keras_object(serialized, safe_mode=True)
    assert isinstance(restored, WarmupRsqrtDecay)
    assert restored.get_config() == config
    for step in (0, 100, 3999, 4000, 10_000):
        assert lr(restored, step) == pytest.approx(lr(schedule, step))

    # Inside an optimizer's config too (what a saved .keras model holds).
    optimizer = keras.optimizers.Adam(learning_rate=schedule, clipnorm=1.0)
    rebuilt = keras.optimizers.Adam.from_config(keras.optimizers.serialize(optimizer)["config"])
    assert isinstance(rebuilt.learning_rate, WarmupRsqrtDecay) or isinstance(
        getattr(rebuilt, "_learning_rate", None), WarmupRsqrtDecay)
    assert rebuilt.get_config()["learning_rate"]["config"] == config
    assert rebuilt.clipnorm == 1.0


@pytest.mark.parametrize("peak, warmup, match", [
    (0.0, 10, "learning_rate"), (-1e-3, 10, "learning_rate"), (1e-3, -1, "warmup_steps"),
    (1e-3, 2.5, "warmup_steps"),
])
def test_rejects_bad_arguments(peak, warmup, match):
    with pytest.raises(ValueError, match=match):
        WarmupRsqrtDecay(peak, warmup)

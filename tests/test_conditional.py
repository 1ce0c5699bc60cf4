"""Class-conditional Image Transformer beyond the properties every variant shares (`test_model_properties.py`):
label errors, learning the class, export and the commands."""

import os

import keras
import numpy as np
import pytest

import imagetransformer as it
from conftest import AS_EXPORTED, random_images, run_python, tiny_kwargs
from imagetransformer.generation import sampling
from imagetransformer.programs import complete as complete_program
from imagetransformer.training import checkpoints

def conditional_model(attention="local_1d", distribution="dmol", image_shape=(4, 4, 3), num_classes=4, **overrides):
    return it.ImageTransformer(**tiny_kwargs(attention, distribution, image_shape, num_classes=num_classes,
                                             **overrides))


@pytest.mark.parametrize("labels,error,match", [
    (None, ValueError, "class-conditional"),
    ([0, 1, 4], ValueError, r"in 0\.\.3"),
    ([0, -1, 2], ValueError, r"in 0\.\.3"),
    ([0.0, 1.0, 2.0], TypeError, "integers"),
    ([[0], [1], [2]], ValueError, r"shape \[batch\]"),
    ([0, 1], ValueError, r"shape \[batch\]"),
])
def test_wrong_labels_are_refused(labels, error, match):
    model = conditional_model()
    images = random_images(3, model.image_shape)
    with pytest.raises(error, match=match):
        sampling.complete(model, images, known_rows=2, labels=labels)
    with pytest.raises(error, match=match):
        model.log_prob(images, labels)


def test_an_unconditional_model_refuses_labels():
    model = it.ImageTransformer(**tiny_kwargs("local_1d"))
    with pytest.raises(ValueError, match="unconditional"):
        model.log_prob(random_images(2, model.image_shape), [0, 1])


def test_fit_learns_the_class(tmp_path):
    # Class 0: dark images, class 1: bright images. Conditioning must make each class's images likelier.
    model = conditional_model("local_1d", image_shape=(4, 4, 1), num_classes=2)
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 2, 256)
    images = np.where(labels[:, None, None, None] == 1, rng.randint(200, 256, (256, 4, 4, 1)),
                      rng.randint(0, 56, (256, 4, 4, 1))).astype(np.uint8)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit({"images": images, "labels": labels}, batch_size=32, epochs=20, verbose=0)
    right = model.bits_per_dim(images[:64], labels[:64]).numpy().mean()
    wrong = model.bits_per_dim(images[:64], 1 - labels[:64]).numpy().mean()
    assert right < wrong - 1.0


def test_export_takes_labels_and_matches_python_in_a_fresh_process(tmp_path):
    from imagetransformer import export  # pylint: disable=import-outside-toplevel

    model = conditional_model("local_1d", image_shape=(4, 4, 1), num_classes=3)
    result = export.export_model(model, str(tmp_path / "exported"))
    images = random_images(2, model.image_shape)
    expected = sampling.complete(model, images, known_rows=2, seed=[4, 5], labels=[0, 2], **AS_EXPORTED).numpy()
    np.save(tmp_path / "images.npy", images)
    script = f"""
import numpy as np, tensorflow as tf
m = tf.saved_model.load({result.saved_model_dir!r})
images = np.load("images.npy")
out = m.signatures["complete"](top_half=tf.constant(images[:, :2]), seed=tf.constant([4, 5], tf.int64),
                               temperature=tf.constant([1.0, 1.0]), label=tf.constant([0, 2], tf.int64))["images"]
np.save("out.npy", out.numpy())
assert m.signatures["sample"](seed=tf.constant([1], tf.int64), label=tf.constant([2], tf.int64))["images"].shape[0] == 1
bits = m.signatures["log_prob"](images=tf.constant(images), label=tf.constant([0, 2], tf.int64))["bits_per_dim"]
np.save("bits.npy", bits.numpy())
try:
    m.signatures["sample"](seed=tf.constant([1], tf.int64), label=tf.constant([3], tf.int64))
    print("accepted")
except tf.errors.InvalidArgumentError as e:
    print("refused:", "label must be in 0..2" in str(e))
"""
    run = run_python("-c", script, cwd=tmp_path, pythonpath=None)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "refused: True" in run.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
    np.testing.assert_allclose(np.load(tmp_path / "bits.npy"), model.bits_per_dim(images, [0, 2]), rtol=1e-5)


def test_commands_train_evaluate_and_complete_class_conditional(tmp_path, run_program):
    run = run_program("train", "--config=tiny", "--conditional=class", "--model_dir=cc",
                      "--train_steps=2", "--verbose=0", "--summary_images=2", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    with open(tmp_path / "cc" / "config.json") as f:
        assert '"num_classes": 10' in f.read()
    run = run_program("evaluate", "--model_dir=cc", "--eval_examples=8", cwd=tmp_path)
    assert run.returncode == 0 and "bits/dim" in run.stdout, run.stderr[-2000:]
    run = run_program("complete", "--model_dir=cc", "--output=s.png", "--num_images=3",
                      "--unconditional", cwd=tmp_path)
    assert run.returncode == 0 and os.path.getsize(tmp_path / "s.png") > 0, run.stderr[-2000:]
    # --label chooses the classes (cycled): the samples are it.sample's given those classes.
    samples = complete_program.run(str(tmp_path / "cc"), str(tmp_path / "l.png"), num_images=3, unconditional=True,
                                   labels=["7", "2"], progress=False)
    expected = it.sample(checkpoints.load_model(str(tmp_path / "cc")), 3, seed=0, labels=[7, 2, 7])
    np.testing.assert_array_equal(samples, expected.numpy())
    run = run_program("complete", "--model_dir=cc", "--output=x.png", "--label=12", cwd=tmp_path)
    assert run.returncode == 1 and "labels must be in 0..9" in run.stderr, run.stderr
    run = run_program("train", "--config=tiny", "--conditional=class", "--model=pixelcnnpp",
                      "--model_dir=bad", cwd=tmp_path)
    assert run.returncode == 1 and "--conditional=class needs --model=image_transformer" in run.stderr
    assert not os.path.exists(tmp_path / "bad")

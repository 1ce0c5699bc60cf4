"""Super-resolution Image Transformer beyond the properties every variant shares (`test_model_properties.py`):
`super_resolve`, input errors, learning from the low-resolution image, export in a fresh process, the resize
helpers and metrics, and the commands."""

import os

import keras
import numpy as np
import pytest

import imagetransformer as it
from conftest import AS_EXPORTED, random_images, run_python, tiny_kwargs
from imagetransformer.data import resize
from imagetransformer.evaluation import super_resolution_metrics
from imagetransformer.generation import sampling


def sr_model(attention="local_1d", distribution="dmol", image_shape=(4, 4, 3), scale=2, **overrides):
    return it.SuperResolutionTransformer(scale=scale, **tiny_kwargs(attention, distribution, image_shape,
                                                                    **overrides))


def test_super_resolve_generates_every_row_given_the_low_res_image():
    model = sr_model()
    low_res = random_images(2, model.low_res_shape, seed=3)
    images = it.super_resolve(model, low_res, seed=[4, 5]).numpy()
    assert images.shape == (2, *model.image_shape) and images.dtype == np.uint8
    zeros = np.zeros((2, *model.image_shape), np.uint8)
    np.testing.assert_array_equal(images, sampling.complete(model, zeros, 0, seed=[4, 5], low_res=low_res))
    other = it.super_resolve(model, random_images(2, model.low_res_shape, seed=4), seed=[4, 5]).numpy()
    assert (other != images).any()  # the low-resolution image matters


@pytest.mark.parametrize("low_res,error,match", [
    (None, ValueError, "needs low_res"),
    (np.zeros((2, 2, 2, 3), np.float32), TypeError, "integer"),
    (np.zeros((2, 4, 4, 3), np.uint8), ValueError, r"shape \[batch, 2, 2, 3\]"),
    (np.zeros((3, 2, 2, 3), np.uint8), ValueError, "batch 2"),
    (np.full((2, 2, 2, 3), 300, np.int32), ValueError, r"0\.\.255"),
])
def test_wrong_low_res_images_are_refused(low_res, error, match):
    model = sr_model()
    images = random_images(2, model.image_shape)
    with pytest.raises(error, match=match):
        model.log_prob(images, low_res=low_res)
    with pytest.raises(error, match=match):
        sampling.complete(model, images, known_rows=0, low_res=low_res)


def test_other_conditions_are_refused_clearly():
    model = sr_model()
    images = random_images(2, model.image_shape)
    with pytest.raises(ValueError, match="takes 'low_res' beside the images, not 'labels'"):
        model.log_prob(images, [0, 1])
    with pytest.raises(ValueError, match="unconditional: it takes no 'low_res'"):
        it.ImageTransformer(**tiny_kwargs()).log_prob(images, low_res=resize.downsample(images, 2))
    with pytest.raises(ValueError, match="needs a SuperResolutionTransformer"):
        it.super_resolve(it.ImageTransformer(**tiny_kwargs()), resize.downsample(images, 2))
    with pytest.raises(ValueError, match=r"scale=3 must divide the image height and width 4x4"):
        sr_model(scale=3)
    with pytest.raises(ValueError, match="num_classes must be None"):
        sr_model(num_classes=3)


def test_fit_learns_to_use_the_low_res_image():
    # Images are constant: their low-resolution version tells the model the value of every pixel.
    model = sr_model("local_1d", image_shape=(4, 4, 1))
    rng = np.random.RandomState(0)
    images = np.broadcast_to(rng.randint(0, 256, (256, 1, 1, 1)), (256, 4, 4, 1)).astype(np.uint8)
    low_res = resize.downsample(images, 2).numpy()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit({"images": images, "low_res": low_res}, batch_size=32, epochs=15, verbose=0)
    right = model.bits_per_dim(images[:64], low_res=low_res[:64]).numpy().mean()
    wrong = model.bits_per_dim(images[:64], low_res=low_res[64:128]).numpy().mean()
    assert right < wrong - 1.0


def test_resize_and_metrics():
    blocks = np.kron(random_images(2, (2, 2, 1))[..., 0], np.ones((2, 2), np.uint8))[..., None]  # [2, 4, 4, 1]
    low_res = resize.downsample(blocks, 2).numpy()
    np.testing.assert_array_equal(low_res, blocks[:, ::2, ::2])  # a block's mean is its value
    np.testing.assert_array_equal(resize.downsample(np.array([[[[0], [1]], [[1], [1]]]]), 2), [[[[1]]]])  # 0.75
    flat = resize.bicubic(np.full((1, 2, 2, 3), 77, np.uint8), 4).numpy()
    assert flat.shape == (1, 8, 8, 3) and np.all(flat == 77)
    exact = super_resolution_metrics.quality(blocks, blocks, low_res, 2)
    assert exact == {"psnr": 100.0, "ssim": pytest.approx(1.0), "consistent": 1.0, "downsampled_error": 0.0}
    off_by_two = super_resolution_metrics.quality(np.clip(blocks.astype(int) + 2, 0, 255).astype(np.uint8),
                                                  blocks, low_res, 2)
    assert off_by_two["psnr"] < 100 and off_by_two["consistent"] <= 0.5 and off_by_two["downsampled_error"] > 1.0


def test_export_super_resolves_like_python_in_a_fresh_process(tmp_path):
    from imagetransformer import export  # pylint: disable=import-outside-toplevel

    model = sr_model("local_1d", image_shape=(4, 4, 1))
    result = export.export_model(model, str(tmp_path / "exported"))
    images = random_images(2, model.image_shape)
    low_res = resize.downsample(images, 2).numpy()
    expected = it.super_resolve(model, low_res, temperature=[1.0, 0.5], seed=[4, 5], **AS_EXPORTED).numpy()
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "low_res.npy", low_res)
    script = f"""
import numpy as np, tensorflow as tf
m = tf.saved_model.load({result.saved_model_dir!r})
print(sorted(m.signatures))
images, low_res = np.load("images.npy"), np.load("low_res.npy")
out = m.signatures["super_resolve"](low_res=tf.constant(low_res), seed=tf.constant([4, 5], tf.int64),
                                    temperature=tf.constant([1.0, 0.5]))["images"]
np.save("out.npy", out.numpy())
assert m.signatures["serving_default"](low_res=tf.constant(low_res))["images"].shape == (2, 4, 4, 1)
bits = m.signatures["log_prob"](images=tf.constant(images), low_res=tf.constant(low_res))["bits_per_dim"]
np.save("bits.npy", bits.numpy())
try:
    m.signatures["serving_default"](low_res=tf.constant(images))
    print("accepted")
except tf.errors.InvalidArgumentError as e:
    print("refused:", "low_res must be [batch, 2, 2, 1]" in str(e))
"""
    run = run_python("-c", script, cwd=tmp_path, pythonpath=None)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "['log_prob', 'serve', 'serving_default', 'super_resolve']" in run.stdout and "refused: True" in run.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
    np.testing.assert_allclose(np.load(tmp_path / "bits.npy"), model.bits_per_dim(images, low_res=low_res),
                               rtol=1e-5)
    loaded = keras.models.load_model(result.keras_path, safe_mode=True)
    np.testing.assert_array_equal(it.super_resolve(loaded, low_res, temperature=[1.0, 0.5], seed=[4, 5], **AS_EXPORTED),
                                  expected)


def test_commands_train_evaluate_super_resolve_and_export(tmp_path, run_program):
    run = run_program("train", "--config=tiny", "--task=super_resolution", "--model_dir=sr",
                      "--train_steps=2", "--verbose=0", "--summary_images=2", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    with open(tmp_path / "sr" / "config.json") as f:
        config = f.read()
    assert '"model": "super_resolution_transformer"' in config and '"scale": 4' in config
    run = run_program("evaluate", "--model_dir=sr", "--eval_examples=8", "--sr_examples=2",
                      cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    for line in ("bicubic: PSNR", "temperature_0.8: PSNR", "temperature_1.0: PSNR", "test bits/dim"):
        assert line in run.stdout
    run = run_program("super_resolve", "--model_dir=sr", "--output=g.png", "--num_images=2",
                      cwd=tmp_path)
    assert run.returncode == 0 and os.path.getsize(tmp_path / "g.png") > 0, run.stderr[-2000:]
    assert ("columns: low resolution | bicubic | sample at temperature 0.8 | sample at temperature 1 | original"
            in run.stdout), run.stdout
    from PIL import Image  # pylint: disable=import-outside-toplevel

    # 2 rows; 5 columns (low resolution, bicubic, two temperatures, original) of 28 x 4 pixels, 2 pixels apart.
    assert Image.open(tmp_path / "g.png").size == (5 * (28 * 4 + 2) + 2, 2 * (28 * 4 + 2) + 2)
    run = run_program("complete", "--model_dir=sr", "--output=c.png", cwd=tmp_path)
    assert run.returncode == 1 and "use python -m imagetransformer.super_resolve" in run.stderr
    run = run_program("export", "--model_dir=sr", "--export_dir=exp", cwd=tmp_path)
    assert run.returncode == 0 and "super_resolve" in run.stdout, run.stderr[-2000:]
    # Bad super-resolution flags: test_train.py's test_train_bad_flags_fail_with_one_line.

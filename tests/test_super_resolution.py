"""Super-resolution Image Transformer: causality with the low-resolution image fixed, the low-resolution image
changes every prediction, normalization given it, cached == teacher-forced, input errors, saving, export in a fresh
process, the resize helpers and metrics, and the commands."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import imagetransformer as it
from conftest import AS_EXPORTED, random_images, run_python, tiny_kwargs
from imagetransformer.data import resize
from imagetransformer.evaluation import super_resolution_metrics
from imagetransformer.generation import sampling

CASES = [("global", "dmol"), ("local_1d", "dmol"), ("local_2d", "dmol"), ("local_1d", "categorical")]


def sr_model(attention="local_1d", distribution="dmol", image_shape=(4, 4, 3), scale=2, **overrides):
    return it.SuperResolutionTransformer(scale=scale, **tiny_kwargs(attention, distribution, image_shape,
                                                                    **overrides))


def params(model, images, low_res):
    return model({"images": images, "low_res": low_res}).numpy()


@pytest.mark.parametrize("attention,distribution", CASES)
def test_causal_given_the_low_res_image_and_it_changes_every_prediction(attention, distribution):
    model = sr_model(attention, distribution)
    order = model.order
    images = random_images(2, model.image_shape)
    low_res = tf.constant(resize.downsample(images, 2))
    tokens = order.to_sequence(images).numpy().astype(np.int32)
    base = model.sequence_params(tf.constant(tokens), condition=low_res).numpy()
    for position in (0, 5, order.length - 2):
        changed = tokens.copy()
        changed[:, position] = (changed[:, position] + 97) % 256
        moved = model.sequence_params(tf.constant(changed), condition=low_res).numpy()
        np.testing.assert_array_equal(moved[:, : position + 1], base[:, : position + 1])
        assert np.abs(moved[:, position + 1] - base[:, position + 1]).max() > 1e-5  # the next one does see it
    other_low_res = tf.constant(random_images(2, model.low_res_shape, seed=7))
    other = model.sequence_params(tf.constant(tokens), condition=other_low_res).numpy()
    # Every position, the first included (which sees no pixel), depends on the low-resolution image.
    assert np.abs(other - base).max(axis=-1).min() > 1e-5


def test_probabilities_sum_to_one_given_the_low_res_image():
    """Normalization of p(image | low_res) for 2x2 images from a 1x1 input (256^4 images: too many to list).

    By the chain rule it is enough, with causality above, that every conditional sums to one; this sums the
    first pixel over its 256 values, and the last two pixels jointly over all 65,536 pairs after several prefixes.
    """
    model = sr_model("global", image_shape=(2, 2, 1), scale=2, block_length=1, memory_length=1, query_shape=(1, 1),
                     memory_flange=(0, 1))
    values = np.arange(256, dtype=np.uint8)
    for low_value in (0, 140, 255):
        # First pixel: all 256 values, the rest fixed (later pixels do not affect it).
        images = np.zeros((256, 2, 2, 1), np.uint8)
        images[:, 0, 0, 0] = values
        low_res = np.full((256, 1, 1, 1), low_value, np.uint8)
        first = model(({"images": images, "low_res": low_res}))
        per_pixel = model.head.log_prob(first, tf.cast(images, tf.int32)).numpy()[:, 0, 0]
        np.testing.assert_allclose(np.exp(per_pixel.astype(np.float64)).sum(), 1.0, atol=1e-4)
        # Last two pixels: every pair after a fixed prefix.
        for prefix in ((0, 0), (37, 250)):
            pairs = np.stack(np.meshgrid(values, values, indexing="ij"), -1).reshape(-1, 2)
            images = np.zeros((len(pairs), 2, 2, 1), np.uint8)
            images[:, 0, 0, 0], images[:, 0, 1, 0] = prefix
            images[:, 1, :, 0] = pairs
            low = np.full((len(pairs), 1, 1, 1), low_value, np.uint8)
            prefix_image = images[:1]
            log_joint = (np.concatenate([model.log_prob(a, low_res=b).numpy()
                                         for a, b in zip(np.split(images, 4), np.split(low, 4))]).astype(np.float64)
                         - _log_prob_of_first_pixels(model, prefix_image, low[:1], count=2))
            np.testing.assert_allclose(np.exp(log_joint).sum(), 1.0, atol=1e-4)


def _log_prob_of_first_pixels(model, image, low_res, count):
    per_position = model.head.log_prob(model({"images": image, "low_res": low_res}), tf.cast(image, tf.int32))
    return float(tf.reshape(per_position, [-1])[:count].numpy().astype(np.float64).sum())


@pytest.mark.parametrize("attention,distribution", CASES)
def test_cached_decoding_equals_teacher_forcing_given_the_low_res_image(attention, distribution):
    model = sr_model(attention, distribution)
    originals = random_images(3, model.image_shape)
    low_res = resize.downsample(originals, 2)
    images = np.zeros_like(originals)
    generated, step_params = sampling.complete(model, images, known_rows=0, seed=[1, 2, 3], low_res=low_res,
                                               return_params=True, jit_compile=False)
    forced = params(model, generated.numpy(), low_res)  # teacher forcing on the generated images
    np.testing.assert_allclose(step_params.numpy(), forced, rtol=1e-4, atol=1e-4)
    naive = sampling.complete(model, images, known_rows=0, seed=[1, 2, 3], low_res=low_res, use_cache=False)
    np.testing.assert_array_equal(naive, generated)
    np.testing.assert_array_equal(it.super_resolve(model, low_res, seed=[1, 2, 3]), generated)
    # Completion from known rows also conditions on the low-resolution image (prefill path).
    completed, step_params = sampling.complete(model, originals, known_rows=2, seed=[1, 2, 3], low_res=low_res,
                                               return_params=True, jit_compile=False)
    np.testing.assert_array_equal(completed.numpy()[:, :2], originals[:, :2])
    forced = params(model, completed.numpy(), low_res)
    np.testing.assert_allclose(step_params.numpy()[:, 2:], forced[:, 2:], rtol=1e-4, atol=1e-4)


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


def test_keras_file_round_trip_in_safe_mode(tmp_path):
    model = sr_model("local_2d", encoder_layers=2)
    images = random_images(2, model.image_shape)
    low_res = resize.downsample(images, 2)
    path = os.path.join(tmp_path, "sr.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded, it.SuperResolutionTransformer) and loaded.get_config() == model.get_config()
    assert loaded.encoder_layers == 2 and loaded.scale == 2
    np.testing.assert_array_equal(loaded.log_prob(images, low_res=low_res), model.log_prob(images, low_res=low_res))


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


def test_commands_train_evaluate_super_resolve_and_export(tmp_path):
    run = run_python("-m", "imagetransformer.train", "--config=tiny", "--task=super_resolution", "--model_dir=sr",
               "--train_steps=2", "--verbose=0", "--summary_images=2", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    with open(tmp_path / "sr" / "config.json") as f:
        config = f.read()
    assert '"model": "super_resolution_transformer"' in config and '"scale": 4' in config
    run = run_python("-m", "imagetransformer.evaluate", "--model_dir=sr", "--eval_examples=8", "--sr_examples=2",
               cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    for line in ("bicubic: PSNR", "temperature_0.8: PSNR", "temperature_1.0: PSNR", "test bits/dim"):
        assert line in run.stdout
    run = run_python("-m", "imagetransformer.super_resolve", "--model_dir=sr", "--output=g.png", "--num_images=2",
               cwd=tmp_path)
    assert run.returncode == 0 and os.path.getsize(tmp_path / "g.png") > 0, run.stderr[-2000:]
    assert ("columns: low resolution | bicubic | sample at temperature 0.8 | sample at temperature 1 | original"
            in run.stdout), run.stdout
    from PIL import Image  # pylint: disable=import-outside-toplevel

    # 2 rows; 5 columns (low resolution, bicubic, two temperatures, original) of 28 x 4 pixels, 2 pixels apart.
    assert Image.open(tmp_path / "g.png").size == (5 * (28 * 4 + 2) + 2, 2 * (28 * 4 + 2) + 2)
    run = run_python("-m", "imagetransformer.complete", "--model_dir=sr", "--output=c.png", cwd=tmp_path)
    assert run.returncode == 1 and "use python -m imagetransformer.super_resolve" in run.stderr
    run = run_python("-m", "imagetransformer.export", "--model_dir=sr", "--export_dir=exp", cwd=tmp_path)
    assert run.returncode == 0 and "super_resolve" in run.stdout, run.stderr[-2000:]
    run = run_python("-m", "imagetransformer.train", "--config=tiny", "--task=super_resolution", "--model=pixelcnnpp",
               "--model_dir=bad", cwd=tmp_path)
    assert run.returncode == 1 and "--task=super_resolution needs --model=image_transformer" in run.stderr
    run = run_python("-m", "imagetransformer.train", "--config=tiny", "--task=super_resolution", "--scale=3",
               "--model_dir=bad", cwd=tmp_path)
    assert run.returncode == 1 and "--scale=3 must divide" in run.stderr, run.stderr[-2000:]
    assert not os.path.exists(tmp_path / "bad")

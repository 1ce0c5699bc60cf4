"""PixelCNN++ baseline beyond the properties every variant shares (`test_model_properties.py`): no blind spot, the
shifted convolutions, its head against tfp's PixelCNN formula, errors, sampling, training and export through the
same commands as the Image Transformer."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import imagetransformer as it
from conftest import random_images, run_python
from imagetransformer.generation import sampling
from imagetransformer.layers import ShiftedConv2D, ShiftedConv2DTranspose



def tiny_pixelcnnpp(image_shape=(8, 8, 3), **overrides):
    kwargs = dict(image_shape=image_shape, num_filters=8, num_resnets=1, num_scales=3, dropout=0.0, num_mixtures=2)
    kwargs.update(overrides)
    return it.PixelCNNPlusPlus(**kwargs)


# ------------------------------------------------------------------------------------------------------------------
# Causality
# ------------------------------------------------------------------------------------------------------------------
def test_every_pixel_is_seen_by_the_next_in_its_row_and_the_one_below():
    """No blind spot (PixelCNN's original defect): with 3 scales of down- and upsampling, each pixel reaches the
    pixel after it in its row and the pixel below it, and no pixel at or before it."""
    model = tiny_pixelcnnpp((8, 8, 3), num_scales=3)
    images = random_images(2, (8, 8, 3))
    base = model(images).numpy().reshape(2, 64, -1)
    for position in range(64):
        changed = images.reshape(2, 64, 3).copy()
        changed[:, position] = (changed[:, position].astype(int) + 97) % 256
        params = model(changed.reshape(2, 8, 8, 3)).numpy().reshape(2, 64, -1)
        np.testing.assert_array_equal(params[:, : position + 1], base[:, : position + 1])
        if position % 8 != 7:  # the next pixel in the same row always sees it
            assert np.abs(params[:, position + 1] - base[:, position + 1]).max() > 1e-5
        if position < 56:  # the pixel below always sees it
            assert np.abs(params[:, position + 8] - base[:, position + 8]).max() > 1e-5


@pytest.mark.parametrize("shift", ["down", "down_right"])
def test_shifted_convolutions_see_only_rows_above_and_columns_up_to_their_own(shift):
    kernel = (2, 3) if shift == "down" else (2, 2)
    for layer, scale in ((ShiftedConv2D(4, kernel, shift, strides=2), 0.5),
                         (ShiftedConv2DTranspose(4, kernel, shift, strides=2), 2.0)):
        x = np.random.RandomState(0).normal(size=(1, 8, 8, 2)).astype("float32")
        if scale == 2.0:
            x = x[:, :4, :4]
        base = layer(x).numpy()
        size = x.shape[1]
        for row, col in [(0, 0), (1, 2), (size - 1, size - 1), (2, size - 1)]:
            changed = x.copy()
            changed[0, row, col] += 1.0
            moved = np.abs(layer(changed).numpy() - base).max(-1)[0] > 0  # [H', W'] outputs that changed
            out_rows, out_cols = np.nonzero(moved)
            assert moved.any() or size - 1 in (row, col)  # strided: output r reads rows 2r-1, 2r, not the last
            # Output (r, c) covers input rows r*2, r*2+1 (downsampling) or r//2 (upsampling): it may depend on
            # input rows up to its first one only, and (down_right) on columns up to its first one only.
            first_row, first_col = (out_rows * 2, out_cols * 2) if scale == 0.5 else (out_rows // 2, out_cols // 2)
            assert np.all(first_row >= row)
            if shift == "down_right":
                assert np.all(first_col >= col)


# ------------------------------------------------------------------------------------------------------------------
# Exact normalization and the head
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_dmol_head_matches_tfp_pixelcnn_formula(channels):
    """The head's log-probability equals tfp.distributions.PixelCNN's quantized logistic mixture on the same
    (random) mixture logits, locations, scales and channel coefficients."""
    k, shape = 3, (4, 4, channels)
    head = it.heads.DiscretizedLogisticMixtureHead(k, channels)
    rng = np.random.RandomState(1)
    params = tf.constant(rng.normal(scale=2.0, size=(2, *shape[:2], head.params_size)), tf.float32)
    images = random_images(2, shape, seed=3)
    ours = tf.reduce_sum(head.log_prob(params, images), axis=[1, 2])  # [B]

    logits, means, log_scales, coefficients = head.split(params)  # [B, H, W, K], [B, H, W, K, C] ...
    scaled = tf.cast(images, tf.float32)[..., None, :] / 127.5 - 1.0  # [B, H, W, 1, C]
    locs = [means[..., c] for c in range(channels)]
    index = 0
    for c in range(channels):  # tfp's coupling: loc_c += coef * x_j for j < c
        for j in range(c):
            locs[c] += coefficients[..., index] * scaled[..., j]
            index += 1
    reference = tfp.distributions.PixelCNN(image_shape=shape, num_resnet=1, num_hierarchies=1, num_filters=2,
                                           num_logistic_mix=k)
    dist = reference._make_mixture_dist(  # pylint: disable=protected-access  (the formula, without its network)
        logits, tf.stack(locs, axis=-1), tf.exp(log_scales))
    theirs = dist.log_prob(tf.cast(images, tf.float32))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5)


# ------------------------------------------------------------------------------------------------------------------
# Saving, errors, sampling
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(image_shape=(6, 6, 1), num_scales=3), "divisible by 4"),
    (dict(distribution="categorical"), "dmol"),
    (dict(num_filters=0), "num_filters"),
    (dict(dropout=1.0), "dropout"),
    (dict(image_shape=(8, 8, 2)), "channels"),
])
def test_configuration_errors_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_pixelcnnpp(**kwargs)


def test_naive_sampling_in_python_equals_the_graph_loop_of_the_export():
    model = tiny_pixelcnnpp((4, 4, 3), num_scales=2)
    images = random_images(3, model.image_shape)
    eager = sampling.complete(model, images, known_rows=2, seed=[5, 6, 7], temperature=[1.0, 0.5, 2.0]).numpy()
    np.testing.assert_array_equal(eager[:, :2], images[:, :2])
    decoder = sampling.Decoder(model, jit_compile=False)
    tokens = model.order.to_sequence(tf.cast(images, tf.int32)) * tf.constant(
        (np.arange(16) < 8).astype(np.int32)[None, :, None])
    seeds = sampling.per_image_seeds(tf.constant([5, 6, 7], tf.int64), 3)
    graph = tf.function(lambda t: decoder.complete_tokens(t, 8, seeds, tf.constant([1.0, 0.5, 2.0])))(tokens)
    np.testing.assert_array_equal(model.order.to_images(graph).numpy(), eager)


# ------------------------------------------------------------------------------------------------------------------
# The commands: train, evaluate, complete, export (and the export in a fresh process)
# ------------------------------------------------------------------------------------------------------------------
def test_commands_train_evaluate_complete_and_export_pixelcnnpp(tmp_path, run_program):
    # 8x8 images (Fashion-MNIST resized): the naive decoder re-runs the network per pixel, 32 times per completion.
    run = run_program("train", "--config=tiny", "--model=pixelcnnpp", "--model_dir=pc",
                      "--image_shape=8,8,1", "--train_steps=4", "--verbose=0", "--summary_images=0", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "PixelCNN++" in run.stdout
    run = run_program("evaluate", "--model_dir=pc", "--eval_examples=16", cwd=tmp_path)
    assert run.returncode == 0 and "bits/dim" in run.stdout, run.stderr[-2000:]
    run = run_program("complete", "--model_dir=pc", "--output=c.png", "--num_images=2", cwd=tmp_path)
    assert run.returncode == 0 and os.path.getsize(tmp_path / "c.png") > 0, run.stderr[-2000:]
    run = run_program("export", "--model_dir=pc", "--export_dir=exported", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    # The SavedModel alone (no imagetransformer import) completes top halves in a fresh process.
    script = (
        "import numpy as np, tensorflow as tf\n"
        "m = tf.saved_model.load('exported/1')\n"
        "top = np.random.RandomState(0).randint(0, 256, (2, 4, 8, 1)).astype(np.uint8)\n"
        "out = m.signatures['complete'](top_half=tf.constant(top), seed=tf.constant([1, 2], tf.int64),\n"
        "                               temperature=tf.constant([1.0, 1.0]))['images'].numpy()\n"
        "assert out.shape == (2, 8, 8, 1) and (out[:, :4] == top).all()\n"
        "lp = m.signatures['log_prob'](images=tf.constant(out))['bits_per_dim'].numpy()\n"
        "assert np.isfinite(lp).all()\n"
        "print('ok')\n"
    )
    fresh = run_python("-c", script, cwd=tmp_path, pythonpath=None)
    assert fresh.returncode == 0 and "ok" in fresh.stdout, fresh.stderr[-2000:]

"""The Image Transformer's training choices (initialization, value embedding, start vector, convolutional stem,
norm placement, log-scale bounds, learning-rate decay): each changes what it says, and every model built with them
stays causal, exactly normalized, equal under cached and teacher-forced decoding, and saveable."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import imagetransformer as it
from imagetransformer.training import configs, trainer
from conftest import random_images, tiny_kwargs

ALL_CHOICES = dict(initializer_gain=0.2, head_initializer_gain=0.05, value_embedding="projection", start="zeros",
                   conv_stem_layers=2, conv_stem_kernel=(1, 1), norm="post", max_log_scale=None)
OPTIONS = {
    "initializer_gain": dict(initializer_gain=0.2),
    "value_projection": dict(value_embedding="projection"),
    "start_zeros": dict(start="zeros"),
    "conv_stem": dict(conv_stem_layers=2, conv_stem_kernel=(1, 1)),
    "norm_post": dict(norm="post"),
    "all": ALL_CHOICES,
}
# (attention, head) pairs each option is checked on; the stem needs raster order.
CASES = [(name, attention, head) for name in OPTIONS for attention, head in
         [("local_1d", "dmol"), ("global", "categorical"), ("local_2d", "dmol")]
         if not (attention == "local_2d" and OPTIONS[name].get("conv_stem_layers"))]


def _model(attention, head, options, image_shape=(4, 4, 3)):
    kwargs = tiny_kwargs(attention, head, image_shape)
    cols = image_shape[1] * (image_shape[2] if head == "categorical" else 1)
    kwargs.update(block_length=cols, memory_length=cols - 1, query_shape=(2, cols // 2), memory_flange=(1, 1))
    return it.ImageTransformer(**kwargs, **options)


@pytest.mark.parametrize("name,attention,head", CASES)
def test_every_choice_keeps_the_model_causal(name, attention, head):
    model = _model(attention, head, OPTIONS[name])
    tokens = model.order.to_sequence(random_images(2, model.image_shape)).numpy().astype(np.int32)
    base = model.head(model.hidden_states(tokens)).numpy()
    for position in (0, 7, model.order.length - 2):
        changed = tokens.copy()
        changed[:, position] = (changed[:, position] + 97) % 256
        params = model.head(model.hidden_states(changed)).numpy()
        np.testing.assert_array_equal(params[:, : position + 1], base[:, : position + 1])
        assert np.abs(params[:, position + 1] - base[:, position + 1]).max() > 1e-5


@pytest.mark.parametrize("head", ["dmol", "categorical"])
def test_every_choice_together_keeps_probabilities_normalized(head):
    model = it.ImageTransformer(**tiny_kwargs("global", head, image_shape=(1, 2, 1), block_length=1,
                                              memory_length=1), **ALL_CHOICES)
    values = np.arange(256, dtype=np.uint8)
    images = np.stack(np.meshgrid(values, values, indexing="ij"), -1).reshape(-1, 1, 2, 1)
    log_probs = np.concatenate([model.log_prob(chunk).numpy() for chunk in np.split(images, 4)])
    assert np.all(np.isfinite(log_probs))
    assert abs(np.exp(log_probs.astype(np.float64)).sum() - 1.0) < 1e-4


@pytest.mark.parametrize("name,attention,head", CASES)
def test_every_choice_keeps_cached_decoding_equal_to_teacher_forcing(name, attention, head):
    model = _model(attention, head, OPTIONS[name])
    images = random_images(2, model.image_shape)
    completed, step_params = it.complete(model, images, 2, seed=5, return_params=True)
    np.testing.assert_allclose(step_params.numpy()[:, 2:], model(completed).numpy()[:, 2:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("head", ["dmol", "categorical"])
def test_every_choice_round_trips_through_a_keras_file(head, tmp_path):
    model = _model("local_1d", head, ALL_CHOICES)
    images = random_images(2, model.image_shape)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.log_prob(images), model.log_prob(images))
    np.testing.assert_array_equal(it.complete(loaded, images, 2, seed=1), it.complete(model, images, 2, seed=1))


# ------------------------------------------------------------------------------------------------------------------
# What each choice changes
# ------------------------------------------------------------------------------------------------------------------
def _kernel_std(model, contains):
    return np.std(np.concatenate([w.numpy().ravel() for w in model.weights
                                  if contains in w.path and w.path.endswith("kernel")]))


def test_initializer_gain_scales_the_kernels_variance_and_the_head_gain_only_the_head():
    base = _model("local_1d", "dmol", {}, image_shape=(8, 8, 1))
    scaled = _model("local_1d", "dmol", dict(initializer_gain=0.2, head_initializer_gain=0.01), image_shape=(8, 8, 1))
    for part in ("attention", "ffn_in"):
        assert _kernel_std(scaled, part) / _kernel_std(base, part) == pytest.approx(0.2 ** 0.5, rel=0.1)
    assert _kernel_std(scaled, "head") / _kernel_std(base, "head") == pytest.approx(0.1, rel=0.1)
    # With a small head gain the DMoL means start inside the pixel range [-1, 1].
    tokens = scaled.order.to_sequence(random_images(4, (8, 8, 1))).numpy()
    _, means, _, _ = scaled.head.split(scaled.head(scaled.hidden_states(tokens)))
    assert np.abs(means.numpy()).max() < 1.0


def test_projection_embeds_nearby_values_nearby():
    model = _model("local_1d", "dmol", dict(value_embedding="projection"), image_shape=(4, 4, 1))
    embed = model.embedding.embed_values
    e = embed(tf.constant([[[100]], [[101]], [[228]]]), tf.zeros([3, 1], tf.int32)).numpy()[:, 0]
    assert np.linalg.norm(e[1] - e[0]) < 0.05 * np.linalg.norm(e[2] - e[0])
    table = _model("local_1d", "dmol", {}, image_shape=(4, 4, 1)).embedding.embed_values
    t = table(tf.constant([[[100]], [[101]], [[228]]]), tf.zeros([3, 1], tf.int32)).numpy()[:, 0]
    assert np.linalg.norm(t[1] - t[0]) > 0.3 * np.linalg.norm(t[2] - t[0])  # a table knows no neighbours


def test_zero_start_feeds_only_the_position_signal_to_position_zero():
    model = _model("local_1d", "dmol", dict(start="zeros"), image_shape=(4, 4, 1))
    x = model.embedding(tf.constant(random_images(2, (16, 1, 1)).reshape(2, 16, 1)))
    np.testing.assert_allclose(x[:, 0], np.broadcast_to(model.embedding._position_signal(0), x[:, 0].shape))
    assert not [w for w in model.embedding.weights if "start" in w.path]
    learned = _model("local_1d", "dmol", {}, image_shape=(4, 4, 1))
    assert [w for w in learned.embedding.weights if "start" in w.path]


def test_conv_stem_shows_each_position_the_pixel_above_that_its_attention_cannot_see():
    # Blocks of one position with no memory: the attention sees only the position itself (its shifted input).
    def model(stem_layers):
        return it.ImageTransformer(**tiny_kwargs("local_1d", "dmol", image_shape=(4, 4, 1), block_length=1,
                                                 memory_length=0), conv_stem_layers=stem_layers)

    images = random_images(1, (4, 4, 1))
    changed = images.copy()
    changed[0, 1, 2] = 255 - changed[0, 1, 2]  # the pixel above (2, 2)
    for stem_layers, sees in ((0, False), (1, True)):
        m = model(stem_layers)
        delta = np.abs(m(changed).numpy() - m(images).numpy())[0, 2, 2].max()
        assert (delta > 1e-5) == sees, (stem_layers, delta)


def test_conv_stem_is_refused_in_block_raster_order():
    with pytest.raises(ValueError, match="conv_stem_layers needs raster order"):
        it.ImageTransformer(**tiny_kwargs("local_2d", "dmol"), conv_stem_layers=1)


def test_post_norm_normalizes_every_block_output_and_drops_the_final_norm():
    model = _model("local_1d", "dmol", dict(norm="post"), image_shape=(4, 4, 1))
    assert model.final_norm is None and _model("local_1d", "dmol", {}).final_norm is not None
    x = model.embedding(model.order.to_sequence(random_images(2, (4, 4, 1))))
    for block in model.decoder_blocks:
        x = block(x)
        np.testing.assert_allclose(np.mean(x, -1), 0.0, atol=1e-4)
        np.testing.assert_allclose(np.std(x, -1), 1.0, atol=1e-2)


def test_max_log_scale_bounds_the_dmol_scales_only_when_set():
    clipped = _model("global", "dmol", {}, image_shape=(2, 2, 1)).head
    open_ended = _model("global", "dmol", dict(max_log_scale=None), image_shape=(2, 2, 1)).head
    k = clipped.num_mixtures  # C=1: logits, means, log-scales (all 5) of K components
    params = tf.concat([tf.zeros([1, 2 * k]), tf.fill([1, k], 5.0)], -1)
    assert clipped.split(params)[2].numpy().max() == 3.0
    assert open_ended.split(params)[2].numpy().max() == 5.0
    # Still a distribution over 0..255 with finite log-probabilities at the edges.
    assert np.isfinite(open_ended.log_prob(params, tf.constant([[0]])).numpy()).all()


def test_cosine_decay_warms_up_to_the_peak_and_ends_at_zero():
    config = configs.get_config("tiny", learning_rate=1e-3, warmup_steps=10, train_steps=110, lr_decay="cosine")
    schedule = trainer.learning_rate_schedule(config.train)
    assert float(schedule(5)) == pytest.approx(5e-4)
    assert float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-9)
    rsqrt = trainer.learning_rate_schedule(config.replace(lr_decay="rsqrt").train)
    assert float(rsqrt(109)) > 1e-4


def test_default_configuration_validates_on_held_out_training_images_not_the_test_split():
    data = configs.get_config().data
    assert data.val_split != "test" and data.val_split.startswith("train[")
    assert data.train_split.startswith("train[")
    # The two slices are complementary: 95% / 5% of the train split.
    assert (data.train_split, data.val_split) == ("train[:95%]", "train[95%:]")

"""Pretrained presets: the shipped ones reproduce their model cards; the mechanism on a freshly trained tiny model."""

import json
import os
import re
import shutil
import zipfile

import keras
import numpy as np
import pytest

import imagetransformer as it
from conftest import REPO, run_python
from imagetransformer import data, presets
from imagetransformer.evaluation import evaluator
from imagetransformer.generation import sampling
from imagetransformer.training import checkpoints, configs, trainer

HAVE_DATA = os.path.isfile(os.path.join(data.DEBIAN_FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz"))
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="Debian package dataset-fashion-mnist is not installed")
SHIPPED = sorted(presets.list_presets())


def _test_images(count, with_labels=False):
    images = data.load_images("fashion_mnist", "test", image_shape=(28, 28, 1), with_labels=with_labels)
    return list(images.dataset.take(count).as_numpy_iterator())


# ----------------------------------------------------------------------------------------------------------------
# The shipped presets.
# ----------------------------------------------------------------------------------------------------------------
def test_the_promised_presets_ship_and_are_small():
    tasks = {meta["task"] for meta in presets.list_presets().values()}
    attentions = {meta["attention"] for meta in presets.list_presets().values()}
    assert {"generation"} <= tasks and {"local_1d", "local_2d"} <= attentions, presets.list_presets()
    size = sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(presets.PRESETS_DIR) for name in names)
    assert size < 20 * 2**20, f"presets take {size / 2**20:.1f} MB"
    for name, meta in presets.list_presets().items():
        assert list(meta) == list(presets.METADATA_KEYS), name
        with open(os.path.join(presets.path(name), presets.CARD_FILE)) as f:
            card = f.read()
        assert f"{meta['test_bits_per_dim']}" in card and "python -m imagetransformer.train" in card, name


def test_readme_and_benchmarks_quote_each_cards_bits_per_dim():
    """The presets tables of README.md and BENCHMARKS.md give each preset's test bits/dim as its card does."""
    for doc in ("README.md", "BENCHMARKS.md"):
        with open(os.path.join(REPO, doc)) as f:
            rows = {line.split("|")[1].strip(" `"): line for line in f if line.startswith("| `fashion_mnist_")}
        for name, meta in presets.list_presets().items():
            assert name in rows, f"{doc} has no row for preset {name}"
            assert f"{meta['test_bits_per_dim']:.3f}" in rows[name], f"{doc}: {rows[name].strip()}"


def test_readme_python_snippets_run_as_written(tmp_path, monkeypatch):
    """Every ```python block of README.md runs as written, one after another: the pretrained quickstart, the usage
    example that builds, trains, completes and samples a small model, and `load_model` of an export's `.keras` file
    (there, the file the export command writes, of the usage example's model)."""
    with open(os.path.join(REPO, "README.md")) as f:
        blocks = re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.S | re.M)
    assert len(blocks) >= 3, "README.md lost its Python examples"
    os.symlink(os.path.join(REPO, "imagetransformer_serving"), tmp_path / "imagetransformer_serving")
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    previous = {}
    for i, block in enumerate(blocks):
        keras_file = re.search(r"exported/imagetransformer/keras/1\.keras", block)
        if keras_file:
            os.makedirs(os.path.dirname(keras_file.group(0)))
            previous["model"].save(keras_file.group(0))
        namespace = {}
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)  # pylint: disable=exec-used
        model = namespace["model"]
        for name in ("completed", "samples"):  # what the examples generate: uint8 images of the model's shape
            if name in namespace:
                value = np.asarray(namespace[name])
                assert value.dtype == np.uint8 and value.shape[1:] == tuple(model.image_shape), name
        if "completed" in namespace:  # the known top rows are kept
            given = namespace["images"] if "images" in namespace else namespace["image"]
            np.testing.assert_array_equal(np.asarray(namespace["completed"])[:, :14], given[:, :14])
        if keras_file:  # the loaded model scores as the saved one
            images = previous["images"]
            np.testing.assert_allclose(model.log_prob(images), previous["model"].log_prob(images), rtol=1e-5)
        previous = namespace


@needs_data
@pytest.mark.parametrize("name", SHIPPED)
def test_preset_reproduces_its_card(name):
    meta = presets.list_presets()[name]
    model = it.from_preset(name)
    result = evaluator.evaluate(presets.path(name), "test", eval_examples=presets.CHECK_IMAGES, model=model,
                                sr_examples=0)
    assert abs(result.bits_per_dim - meta["check_bits_per_dim"]) < 0.02, (result.bits_per_dim, meta)
    if meta["task"] == "super_resolution":
        return
    # Completion keeps the given rows (a class-conditional preset completes each image given its own class).
    elements = _test_images(2, with_labels=meta["task"] == "class_conditional")
    labels = None
    if meta["task"] == "class_conditional":
        elements, labels = [e[0] for e in elements], np.array([e[1] for e in elements])
    images = np.stack(elements)
    known = sampling.default_known_rows(model)
    completed = it.complete(model, images, known_rows=known, seed=0, labels=labels).numpy()
    np.testing.assert_array_equal(completed[:, :known], images[:, :known])


@pytest.mark.parametrize("name", SHIPPED)
def test_preset_loads_in_a_fresh_process_with_safe_mode(name, tmp_path):
    script = (
        "import keras, imagetransformer as it\n"
        f"m = keras.models.load_model({os.path.join(presets.path(name), presets.MODEL_FILE)!r}, safe_mode=True)\n"
        f"assert isinstance(m, it.models.AutoregressiveImageModel)\n"
        f"print(m.count_params())\n")
    result = run_python("-c", script, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) == presets.list_presets()[name]["parameters"]


@needs_data
def test_preset_export_answers_log_prob_equal_to_python(tmp_path):
    """`python -m imagetransformer.export --preset` writes a TF Serving export of a shipped preset without training."""
    name = next(n for n in SHIPPED if presets.list_presets()[n]["task"] == "generation")
    result = run_python("-m", "imagetransformer.export", f"--preset={name}", f"--export_dir={tmp_path}", cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    images = np.stack(_test_images(3))
    script = (
        "import numpy as np, tensorflow as tf\n"
        f"f = tf.saved_model.load({str(tmp_path / '1')!r}).signatures['log_prob']\n"
        f"print(f(images=tf.constant(np.load({str(tmp_path / 'x.npy')!r})))['log_prob'].numpy().tolist())\n")
    np.save(tmp_path / "x.npy", images)
    served = run_python("-c", script, cwd=str(tmp_path), pythonpath=None)
    assert served.returncode == 0, served.stderr[-2000:]
    exported = np.array(json.loads(served.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(exported, it.from_preset(name).log_prob(images).numpy(), rtol=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# The mechanism, on a tiny model trained here.
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    if not HAVE_DATA:
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    root = tmp_path_factory.mktemp("presets")
    model_dir = str(root / "model")
    keras.utils.set_random_seed(0)
    trainer.train(configs.get_config("tiny", train_steps=2, val_examples=0), model_dir, verbose=0)
    meta = presets.write_preset(model_dir, "tiny_test", "A tiny test model.", ["python -m imagetransformer.train"],
                                output_root=str(root), eval_examples=16, steps=2, train_minutes=0.1,
                                progress=False)
    return str(root / "tiny_test"), model_dir, meta


def test_write_preset_makes_a_complete_folder(tiny_preset):
    folder, model_dir, meta = tiny_preset
    assert sorted(os.listdir(folder)) == sorted([presets.MODEL_FILE, presets.METADATA_FILE, presets.CARD_FILE,
                                                 presets.GRID_FILE, checkpoints.CONFIG_FILE])
    assert meta["steps"] == 2 and meta["test_images"] == 16 and meta["task"] == "generation"
    assert meta["parameters"] == checkpoints.load_model(model_dir).count_params()
    assert not os.path.exists(folder + ".tmp")


def test_from_preset_folder_equals_the_trained_model(tiny_preset):
    folder, model_dir, _ = tiny_preset
    images = np.stack(_test_images(2))
    model = it.from_preset(folder)
    np.testing.assert_allclose(model.log_prob(images).numpy(),
                               checkpoints.load_model(model_dir).log_prob(images).numpy(), rtol=1e-5)
    assert model.compiled  # evaluate/fit work at once
    assert np.isfinite(model.evaluate(images, verbose=0, return_dict=True)["bits_per_dim"])
    assert isinstance(it.ImageTransformer.from_preset(folder), it.ImageTransformer)
    with pytest.raises(ValueError, match="holds a model of class ImageTransformer, not PixelCNNPlusPlus"):
        it.PixelCNNPlusPlus.from_preset(folder)


def test_a_class_keras_cannot_find_is_named_with_the_fix(tiny_preset, tmp_path):
    # A .keras file naming a model class this version does not register (another version wrote it): the loader says
    # which class and what makes Keras find it, instead of Keras' bare "Could not locate class".
    folder, _, _ = tiny_preset
    other = tmp_path / "other_version"
    shutil.copytree(folder, other)
    archive = other / presets.MODEL_FILE
    with zipfile.ZipFile(folder + "/" + presets.MODEL_FILE) as source, zipfile.ZipFile(archive, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                data = data.replace(b'ImageTransformer"', b'ImageTransformerV9"')  # class and registered name
            target.writestr(item, data)
    with pytest.raises(ValueError, match=r"names 'ImageTransformerV9'.*after `import "
                                         r"imagetransformer`.*another version"):
        it.from_preset(str(other))


def test_unknown_preset_names_the_shipped_ones():
    with pytest.raises(ValueError, match="is not a preset; choose one of") as error:
        it.from_preset("no_such_preset")
    for name in SHIPPED:
        assert name in str(error.value)


def test_programs_take_a_preset(tiny_preset, tmp_path, run_program):
    folder, _, _ = tiny_preset
    output = str(tmp_path / "grid.png")
    result = run_program("complete", f"--preset={folder}", f"--output={output}",
                         "--num_images=1", cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.getsize(output) > 0
    result = run_program("evaluate", f"--preset={folder}", "--eval_examples=4", cwd=REPO)
    assert result.returncode == 0 and "test bits/dim:" in result.stdout, result.stderr[-2000:]
    result = run_program("complete", "--preset=no_such_preset", cwd=REPO)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: --preset:"), result.stderr
    result = run_program("complete", f"--preset={folder}", f"--model_dir={folder}", cwd=REPO)
    assert result.returncode == 1 and "not both" in result.stderr, result.stderr

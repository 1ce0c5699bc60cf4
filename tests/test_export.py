"""Tests of imagetransformer.export: the SavedModel signatures (loaded where `imagetransformer` is not importable), the
`.keras` file, `saved_model_cli`, TF Serving's directory layout, versions, overwrite and atomicity, CLI errors.

One tiny local_2d model (8x8x1, two 2x4 query-block rows per half) is exported once per module through the command
line; the other tests use cheap in-process exports or a stand-in archive.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

import imagetransformer as it
from imagetransformer import export as export_lib
from imagetransformer.export import writer as export_writer
from imagetransformer import models
from imagetransformer.generation.sampling import Decoder
from imagetransformer.training import checkpoints

from conftest import AS_EXPORTED, random_images, tiny_kwargs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")  # .venv/bin/saved_model_cli
SAVED_MODEL_CLI = [_CLI] if os.path.exists(_CLI) else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
IMAGE_SHAPE = (8, 8, 1)
KNOWN_ROWS = 4
TIMEOUT = 240


def clean_env(**extra):
    """Environment of a child process: quiet TF, no PYTHONPATH (unless given)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra)
    return env


def run(args, cwd, **env):
    return subprocess.run(args, cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=TIMEOUT)


def make_model_dir(path, **overrides):
    kwargs = tiny_kwargs("local_2d", image_shape=IMAGE_SHAPE, query_shape=(2, 4), memory_flange=(1, 2))
    kwargs.update(overrides)
    keras.utils.set_random_seed(1)
    model = it.ImageTransformer(**kwargs)
    checkpoints.save_config(str(path), models.config_of(model))
    checkpoints.save_weights(model, str(path))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, model_dir, export_dir) after `python -m imagetransformer.export` wrote version 1."""
    root = tmp_path_factory.mktemp("export")
    model_dir, export_dir = root / "model", root / "exported" / "imagetransformer"
    make_model_dir(model_dir)
    result = run([sys.executable, "-m", "imagetransformer.export", f"--model_dir={model_dir}",
                  f"--export_dir={export_dir}"],
                 cwd=REPO, PYTHONPATH=REPO)
    assert result.returncode == 0, result.stderr
    assert "exported version 1" in result.stdout
    return checkpoints.load_model(str(model_dir)), str(model_dir), str(export_dir)


# ----------------------------------------------------------------------------------------------------------------
# Layout.
# ----------------------------------------------------------------------------------------------------------------
def test_layout_follows_tf_serving(exported):
    _, _, export_dir = exported
    entries = sorted(os.listdir(export_dir))
    assert entries == ["1", "keras"]  # nothing hidden or temporary left behind
    assert os.path.isfile(os.path.join(export_dir, "1", "saved_model.pb"))
    assert os.path.isdir(os.path.join(export_dir, "1", "variables"))
    assert os.listdir(os.path.join(export_dir, "keras")) == ["1.keras"]
    # TF Serving treats integer-named entries as versions: only the SavedModel is one.
    assert [e for e in entries if e.isdigit()] == ["1"]


def test_signatures_use_no_py_function_and_no_xla(exported):
    _, _, export_dir = exported
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "1", "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    graph = saved_model.meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    ops = {n.op for n in nodes}
    attrs = {a for n in nodes for a in n.attr} | {a for f in graph.library.function for a in f.attr}
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
    assert not [a for a in attrs if "xla" in a.lower()]
    assert {"While", "StatelessWhile"} & ops  # the cached decoder's loop
    stateful_random = {"RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "Multinomial",
                       "StatefulUniform", "StatefulUniformFullInt", "StatefulStandardNormalV2", "RngReadAndSkip",
                       "RngSkip"}
    assert not ops & stateful_random  # seeds are inputs; no random state (a SeedGenerator would be a variable)
    assert "StatelessRandomUniformV2" in ops
    assert set(saved_model.meta_graphs[0].signature_def) - {"__saved_model_init_op"} == set(export_lib.SIGNATURES)


# ----------------------------------------------------------------------------------------------------------------
# The SavedModel in a fresh process without imagetransformer.
# ----------------------------------------------------------------------------------------------------------------
FRESH_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    repo, saved_model_dir, inputs_path, out_path = sys.argv[1:5]
    # Nothing of the repository is importable: not the working directory, not PYTHONPATH, not an editable install.
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != repo
                   and not os.path.exists(os.path.join(p, "imagetransformer"))]
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
    try:
        import imagetransformer
        importable = True
    except ImportError:
        importable = False
    import numpy as np
    import tensorflow as tf

    inputs = np.load(inputs_path)
    images, seeds, temperature = inputs["images"], inputs["seeds"], inputs["temperature"]
    loaded = tf.saved_model.load(saved_model_dir)
    signatures = loaded.signatures
    top = tf.constant(images[:, : images.shape[1] // 2])

    def complete(top, seeds, temperature):
        return signatures["complete"](top_half=top, seed=tf.constant(seeds, tf.int64),
                                      temperature=tf.constant(temperature, tf.float32))["images"].numpy()

    out = {
        "complete": complete(top, seeds, temperature),
        "complete_again": complete(top, seeds, temperature),
        "complete_other_seeds": complete(top, seeds + 1000, temperature),
        "complete_first_alone": complete(top[:1], seeds[:1], temperature[:1]),
        "serving_default": signatures["serving_default"](top_half=top)["images"].numpy(),
        "sample": signatures["sample"](seed=tf.constant(seeds, tf.int64))["images"].numpy(),
    }
    scores = signatures["log_prob"](images=tf.constant(images))
    out["log_prob"], out["bits_per_dim"] = scores["log_prob"].numpy(), scores["bits_per_dim"].numpy()
    np.savez(out_path, **out)

    def error(fn, **kwargs):
        try:
            fn(**kwargs)
        except tf.errors.InvalidArgumentError as e:
            return e.message
        return None

    b = images.shape[0]
    seed, temp = tf.constant(seeds, tf.int64), tf.constant(temperature, tf.float32)
    errors = {
        "short": error(signatures["serving_default"], top_half=top[:, :-1]),
        "narrow": error(signatures["serving_default"], top_half=top[:, :, :-1]),
        "rgb": error(signatures["serving_default"], top_half=tf.tile(top, [1, 1, 1, 3])),
        "complete_short": error(signatures["complete"], top_half=top[:, 1:], seed=seed, temperature=temp),
        "seed_batch": error(signatures["complete"], top_half=top, seed=seed[:-1], temperature=temp),
        "temperature_batch": error(signatures["complete"], top_half=top, seed=seed, temperature=temp[:-1]),
        "temperature_zero": error(signatures["complete"], top_half=top, seed=seed, temperature=tf.zeros([b])),
        "temperature_nan": error(signatures["complete"], top_half=top, seed=seed,
                                 temperature=tf.fill([b], float("nan"))),
        "log_prob_size": error(signatures["log_prob"], images=tf.constant(images[:, 1:])),
    }
    json.dump({"importable": importable, "signatures": sorted(signatures), "errors": errors},
              open(out_path + ".json", "w"))
    """
)


@pytest.fixture(scope="module")
def fresh(exported, tmp_path_factory):
    """Everything the fresh process computed from the SavedModel, and its inputs."""
    work = tmp_path_factory.mktemp("fresh")  # outside the repository
    images = random_images(3, IMAGE_SHAPE, seed=5)
    images[1] = images[0]  # same top half, different seeds: must still differ
    inputs = dict(images=images, seeds=np.array([11, 12, 13], np.int64),
                  temperature=np.array([1.0, 0.7, 1.0], np.float32))
    np.savez(work / "inputs.npz", **inputs)
    script = work / "fresh.py"
    script.write_text(FRESH_SCRIPT)
    out = str(work / "out.npz")
    result = run([sys.executable, str(script), REPO, os.path.join(exported[2], "1"), str(work / "inputs.npz"), out],
                 cwd=str(work))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out + ".json") as f:
        meta = json.load(f)
    return inputs, dict(np.load(out)), meta


def test_fresh_process_cannot_import_the_package(fresh):
    _, _, meta = fresh
    assert meta["importable"] is False
    assert meta["signatures"] == sorted(export_lib.SIGNATURES)


def test_completion_shapes_and_top_half_unchanged(fresh):
    inputs, out, _ = fresh
    images = inputs["images"]
    for key in ("complete", "serving_default"):
        assert out[key].dtype == np.uint8 and out[key].shape == images.shape
        np.testing.assert_array_equal(out[key][:, :KNOWN_ROWS], images[:, :KNOWN_ROWS])
    assert out["sample"].dtype == np.uint8 and out["sample"].shape == images.shape


def test_seeds_reproduce_and_differ(fresh):
    _, out, _ = fresh
    np.testing.assert_array_equal(out["complete"], out["complete_again"])
    for i in range(3):  # every image changes with its seed
        assert np.any(out["complete"][i, KNOWN_ROWS:] != out["complete_other_seeds"][i, KNOWN_ROWS:])
    # images 0 and 1 share their top half and temperature 1.0 vs 0.7 with different seeds: they differ
    assert np.any(out["complete"][0] != out["complete"][1])
    # an image depends only on its own seed, not on the rest of the batch (TF Serving batches requests)
    np.testing.assert_array_equal(out["complete_first_alone"][0], out["complete"][0])
    # serving_default: seed 0 for every image, so equal top halves give equal completions
    np.testing.assert_array_equal(out["serving_default"][0], out["serving_default"][1])


def test_saved_model_equals_in_process_decoding(exported, fresh):
    """Measured: the SavedModel's completions equal `it.complete` with the export's cache dtype bit for bit."""
    model = exported[0]
    inputs, out, _ = fresh
    images, seeds, temperature = inputs["images"], inputs["seeds"], inputs["temperature"]
    expected = it.complete(model, images, KNOWN_ROWS, temperature=temperature, seed=seeds, **AS_EXPORTED)
    np.testing.assert_array_equal(out["complete"], expected.numpy())
    expected = it.complete(model, images, KNOWN_ROWS, temperature=1.0, seed=np.zeros(3, np.int64), **AS_EXPORTED)
    np.testing.assert_array_equal(out["serving_default"], expected.numpy())
    expected = it.sample(model, 3, temperature=1.0, seed=seeds, **AS_EXPORTED)
    np.testing.assert_array_equal(out["sample"], expected.numpy())


def test_log_prob_equals_model(exported, fresh):
    model = exported[0]
    inputs, out, _ = fresh
    np.testing.assert_allclose(out["log_prob"], model.log_prob(inputs["images"]).numpy(), rtol=1e-4)
    np.testing.assert_allclose(out["bits_per_dim"], model.bits_per_dim(inputs["images"]).numpy(), rtol=1e-4)
    assert out["log_prob"].dtype == np.float32 and out["log_prob"].shape == (3,)


def test_wrong_inputs_are_refused_with_the_expected_shape(fresh):
    _, _, meta = fresh
    errors = meta["errors"]
    assert all(errors.values()), errors  # every bad input failed
    for key in ("short", "narrow", "rgb", "complete_short"):
        assert "top_half must be [batch, 4, 8, 1] uint8" in errors[key], errors[key]
    assert "seed must be [batch]" in errors["seed_batch"]
    assert "temperature must be [batch]" in errors["temperature_batch"]
    assert "temperature must be finite and > 0" in errors["temperature_zero"]
    assert "temperature must be finite and > 0" in errors["temperature_nan"]
    assert "images must be [batch, 8, 8, 1] uint8" in errors["log_prob_size"]


def test_dtype_is_enforced_by_the_signature(exported):
    loaded = tf.saved_model.load(os.path.join(exported[2], "1"))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError), match="uint8"):
        loaded.signatures["serving_default"](top_half=tf.zeros([1, 4, 8, 1], tf.float32))


# ----------------------------------------------------------------------------------------------------------------
# saved_model_cli and the .keras file.
# ----------------------------------------------------------------------------------------------------------------
def test_saved_model_cli_show_lists_the_signatures(exported):
    result = run([*SAVED_MODEL_CLI, "show", "--dir", os.path.join(exported[2], "1"), "--all"],
                 cwd=exported[2])
    assert result.returncode == 0, result.stderr[-2000:]
    shown = result.stdout
    for name in export_lib.SIGNATURES:
        assert f"signature_def['{name}']" in shown
    for name in ("top_half", "seed", "temperature", "images", "log_prob", "bits_per_dim"):
        assert f"['{name}'] tensor_info" in shown
    assert "DT_UINT8" in shown and "DT_INT64" in shown and "DT_FLOAT" in shown


def test_saved_model_cli_run_serving_default(exported, tmp_path):
    model = exported[0]
    images = random_images(2, IMAGE_SHAPE, seed=9)
    np.save(tmp_path / "top.npy", images[:, :KNOWN_ROWS])
    result = run([*SAVED_MODEL_CLI, "run", "--dir", os.path.join(exported[2], "1"),
                  "--tag_set", "serve", "--signature_def", "serving_default",
                  "--inputs", f"top_half={tmp_path / 'top.npy'}", "--outdir", str(tmp_path / "out")],
                 cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    completed = np.load(tmp_path / "out" / "images.npy")
    expected = it.complete(model, images, KNOWN_ROWS, seed=np.zeros(2, np.int64), **AS_EXPORTED)
    np.testing.assert_array_equal(completed, expected.numpy())


KERAS_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    import imagetransformer  # registers the classes; no other repository code is used
    path, images_path, out_path = sys.argv[1:4]
    model = keras.models.load_model(path, safe_mode=True)
    assert type(model).__name__ == "ImageTransformer", type(model)
    images = np.load(images_path)
    # Compiled as saved: evaluate (and fit) work without a compile() of the user's.
    bits = model.evaluate(images, batch_size=len(images), verbose=0, return_dict=True)["bits_per_dim"]
    np.save(out_path, np.append(model.log_prob(images).numpy(), bits))
    """
)


def test_keras_file_loads_in_another_project(exported, tmp_path):
    model, _, export_dir = exported
    images = random_images(2, IMAGE_SHAPE, seed=4)
    np.save(tmp_path / "images.npy", images)
    (tmp_path / "other_project.py").write_text(KERAS_SCRIPT)
    keras_path = os.path.join(export_dir, "keras", "1.keras")
    result = run([sys.executable, str(tmp_path / "other_project.py"), keras_path, str(tmp_path / "images.npy"),
                  str(tmp_path / "log_prob.npy")], cwd=str(tmp_path), PYTHONPATH=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    *log_prob, bits = np.load(tmp_path / "log_prob.npy")
    np.testing.assert_allclose(log_prob, model.log_prob(images).numpy(), rtol=1e-5)
    np.testing.assert_allclose(bits, np.mean(model.bits_per_dim(images)), rtol=1e-5)


def test_tfsm_layer_calls_the_export_by_default(exported):
    """`keras.layers.TFSMLayer(path)` (endpoint `serve`, as for Keras' own exports) completes top halves."""
    model, _, export_dir = exported
    images = random_images(2, IMAGE_SHAPE, seed=5)
    layer = keras.layers.TFSMLayer(os.path.join(export_dir, "1"))
    completed = keras.ops.convert_to_numpy(layer(tf.constant(images[:, :KNOWN_ROWS]))["images"])
    expected = it.complete(model, images, KNOWN_ROWS, seed=np.zeros(2, np.int64), **AS_EXPORTED).numpy()
    np.testing.assert_array_equal(completed, expected)


# ----------------------------------------------------------------------------------------------------------------
# Versions, overwrite, atomicity (a stand-in archive keeps these fast; the real one is exercised above).
# ----------------------------------------------------------------------------------------------------------------
class FakeArchive:
    def __init__(self, fail=False):
        self.fail = fail

    def write_out(self, path, verbose=True):
        os.makedirs(os.path.join(path, "variables"))
        with open(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write("new")
        if self.fail:
            raise RuntimeError("disk full")


@pytest.fixture
def small_model():
    keras.utils.set_random_seed(0)
    return it.ImageTransformer(**tiny_kwargs("global", image_shape=(4, 4, 1), num_layers=1))


def read(path):
    with open(path) as f:
        return f.read()


def test_default_version_is_next_integer(small_model, tmp_path, monkeypatch):
    monkeypatch.setattr(export_writer, "export_archive", lambda model, **_: FakeArchive())
    export_dir = tmp_path / "base"
    assert export_lib.export_model(small_model, str(export_dir)).version == 1
    os.makedirs(export_dir / "7")
    os.makedirs(export_dir / "notes")
    result = export_lib.export_model(small_model, str(export_dir))
    assert result.version == 8
    assert result.saved_model_dir == str(export_dir / "8")
    assert os.path.isfile(export_dir / "keras" / "8.keras")
    assert sorted(os.listdir(export_dir)) == ["1", "7", "8", "keras", "notes"]


def test_existing_version_needs_overwrite(small_model, tmp_path, monkeypatch):
    monkeypatch.setattr(export_writer, "export_archive", lambda model, **_: FakeArchive())
    export_dir = tmp_path / "base"
    os.makedirs(export_dir / "3")
    (export_dir / "3" / "saved_model.pb").write_text("old")
    with pytest.raises(export_lib.ExportError, match="version 3 already exists .*--overwrite"):
        export_lib.export_model(small_model, str(export_dir), version=3)
    assert read(export_dir / "3" / "saved_model.pb") == "old"
    assert os.listdir(export_dir) == ["3"]
    export_lib.export_model(small_model, str(export_dir), version=3, overwrite=True)
    assert read(export_dir / "3" / "saved_model.pb") == "new"
    assert sorted(os.listdir(export_dir)) == ["3", "keras"]  # no temporary directories left
    assert os.listdir(export_dir / "keras") == ["3.keras"]


def test_failed_export_leaves_nothing(small_model, tmp_path, monkeypatch):
    monkeypatch.setattr(export_writer, "export_archive", lambda model, **_: FakeArchive(fail=True))
    export_dir = tmp_path / "new" / "base"
    with pytest.raises(RuntimeError, match="disk full"):
        export_lib.export_model(small_model, str(export_dir))
    assert not os.path.exists(tmp_path / "new")  # created for the export, removed again
    os.makedirs(export_dir / "1")
    (export_dir / "1" / "saved_model.pb").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        export_lib.export_model(small_model, str(export_dir), version=1, overwrite=True)
    assert os.listdir(export_dir) == ["1"]
    assert read(export_dir / "1" / "saved_model.pb") == "old"


def test_failed_rename_restores_the_old_version(small_model, tmp_path, monkeypatch):
    monkeypatch.setattr(export_writer, "export_archive", lambda model, **_: FakeArchive())
    export_dir = tmp_path / "base"
    os.makedirs(export_dir / "1")
    os.makedirs(export_dir / "keras")
    (export_dir / "1" / "saved_model.pb").write_text("old")
    (export_dir / "keras" / "1.keras").write_text("old keras")
    rename = os.rename

    def failing_rename(src, dst):
        if str(src).endswith("saved_model"):  # the new SavedModel's move into place fails
            raise OSError("rename failed")
        return rename(src, dst)

    monkeypatch.setattr(export_writer.os, "rename", failing_rename)
    with pytest.raises(OSError, match="rename failed"):
        export_lib.export_model(small_model, str(export_dir), version=1, overwrite=True)
    monkeypatch.setattr(export_writer.os, "rename", rename)
    assert sorted(os.listdir(export_dir)) == ["1", "keras"]
    assert read(export_dir / "1" / "saved_model.pb") == "old"
    assert read(export_dir / "keras" / "1.keras") == "old keras"


def test_bad_version_is_refused(small_model, tmp_path):
    for version in (0, -2, 2**63):  # TF Serving reads version names as int64 (2**63 would break gRPC)
        with pytest.raises(export_lib.ExportError, match="positive integer of at most 9223372036854775807"):
            export_lib.export_model(small_model, str(tmp_path / "base"), version=version)
    assert not os.path.exists(tmp_path / "base")
    (tmp_path / "full" / str(2**63 - 1)).mkdir(parents=True)  # the largest version: no next one to choose
    with pytest.raises(export_lib.ExportError, match="already holds version 9223372036854775807"):
        export_lib.export_model(small_model, str(tmp_path / "full"))


def test_local_2d_top_half_must_align_with_query_blocks(tmp_path):
    model = it.ImageTransformer(**tiny_kwargs("local_2d", image_shape=(8, 8, 1), num_layers=1, query_shape=(8, 4)))
    with pytest.raises(export_lib.ExportError, match="4 rows .* not a multiple of the local_2d query block height 8"):
        export_lib.export_model(model, str(tmp_path / "base"))
    assert not os.path.exists(tmp_path / "base")


# ----------------------------------------------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------------------------------------------
def export_cli(*flags):
    return run([sys.executable, "-m", "imagetransformer.export", *flags], cwd=REPO, PYTHONPATH=REPO)


def one_line_error(result):
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_cli_refuses_existing_version_without_overwrite(exported):
    _, model_dir, export_dir = exported
    before = os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb"))
    line = one_line_error(export_cli(f"--model_dir={model_dir}", f"--export_dir={export_dir}", "--version=1"))
    assert "version 1 already exists" in line and "--overwrite" in line
    assert os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb")) == before
    assert sorted(os.listdir(export_dir)) == ["1", "keras"]


@pytest.mark.parametrize("damage", ["missing", "corrupt_config", "corrupt_weights"])
def test_cli_reports_bad_model_dir_in_one_line(tmp_path, damage):
    model_dir = tmp_path / "model"
    if damage != "missing":
        make_model_dir(model_dir, num_layers=1)
        target = model_dir / ("config.json" if damage == "corrupt_config" else "model.weights.h5")
        target.write_text("{ not json" if damage == "corrupt_config" else "not hdf5")
    line = one_line_error(export_cli(f"--model_dir={model_dir}", f"--export_dir={tmp_path / 'out'}"))
    assert str(model_dir) in line
    assert not os.path.exists(tmp_path / "out")


def test_concurrent_exports_to_one_base_path_get_distinct_versions(exported, tmp_path):
    """Two exports started together: each claims its own version (the base path's lock serializes them)."""
    _, model_dir, _ = exported
    export_dir = tmp_path / "base"
    args = [sys.executable, "-m", "imagetransformer.export", f"--model_dir={model_dir}", f"--export_dir={export_dir}"]
    processes = [subprocess.Popen(args, cwd=REPO, env=clean_env(PYTHONPATH=REPO), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=TIMEOUT) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    versions = sorted(int(out.split("exported version ")[1].split(":")[0]) for out, _ in outputs)
    assert versions == [1, 2]
    assert sorted(export_lib.existing_versions(str(export_dir))) == [1, 2]


def test_an_export_waits_for_one_in_progress(small_model, tmp_path, monkeypatch):
    """While another process holds the base path, an export waits, then writes the next version."""
    monkeypatch.setattr(export_writer, "export_archive", lambda model, **_: FakeArchive())
    export_dir = tmp_path / "base"
    export_lib.export_model(small_model, str(export_dir))  # version 1
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(3)", str(export_dir)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    result = export_lib.export_model(small_model, str(export_dir))
    assert holder.poll() is not None, "the export did not wait for the holder"
    assert result.version == 2
    holder.wait()


def test_requests_beyond_max_batch_are_refused_before_decoding(tmp_path):
    """Every signature refuses more images than the export's max_batch, with a message naming the limit."""
    keras.utils.set_random_seed(0)
    model = it.ImageTransformer(**tiny_kwargs("local_1d", image_shape=(4, 4, 1), num_layers=1, block_length=4,
                                             memory_length=4))
    result = export_lib.export_model(model, str(tmp_path), max_batch=2)
    signatures = tf.saved_model.load(result.saved_model_dir).signatures
    calls = {
        "serving_default": dict(top_half=tf.zeros([3, 2, 4, 1], tf.uint8)),
        "complete": dict(top_half=tf.zeros([3, 2, 4, 1], tf.uint8), seed=tf.zeros([3], tf.int64),
                         temperature=tf.ones([3])),
        "sample": dict(seed=tf.zeros([3], tf.int64)),
        "log_prob": dict(images=tf.zeros([3, 4, 4, 1], tf.uint8)),
    }
    for name, inputs in calls.items():
        with pytest.raises(tf.errors.InvalidArgumentError, match="batch must be at most 2 images per request"):
            signatures[name](**inputs)
    assert signatures["log_prob"](images=tf.zeros([2, 4, 4, 1], tf.uint8))["log_prob"].shape == (2,)
    with pytest.raises(export_lib.ExportError, match="--max_batch=0 must be a positive integer"):
        export_lib.export_model(model, str(tmp_path / "other"), max_batch=0)


def test_cache_dtype_option(tmp_path):
    """The default export (float32 caches) is the exact decoder, equal to in-process XLA decoding; bfloat16 caches
    are an option; anything else is refused before anything is written."""
    keras.utils.set_random_seed(0)
    model = it.ImageTransformer(**tiny_kwargs("local_1d", image_shape=(4, 4, 1)))
    images = random_images(2, model.image_shape, seed=3)
    fn, specs = export_lib.signature_functions(model)["complete"]
    exact = tf.function(fn, input_signature=specs)(images[:, :2], np.array([4, 5], np.int64), np.ones(2, np.float32))
    expected = it.complete(model, images, 2, seed=[4, 5], jit_compile=True)
    np.testing.assert_array_equal(exact["images"].numpy(), expected.numpy())
    assert export_lib.DEFAULT_CACHE_DTYPE == "float32"
    fn, specs = export_lib.signature_functions(model, cache_dtype="bfloat16")["complete"]
    rounded = tf.function(fn, input_signature=specs)(images[:, :2], np.array([4, 5], np.int64), np.ones(2, np.float32))
    np.testing.assert_array_equal(
        rounded["images"].numpy(),
        it.complete(model, images, 2, seed=[4, 5], jit_compile=False, cache_dtype="bfloat16").numpy())
    with pytest.raises(export_lib.ExportError, match="--cache_dtype='float16' must be one of bfloat16, float32"):
        export_lib.export_model(model, str(tmp_path / "exported"), cache_dtype="float16")
    assert not (tmp_path / "exported").exists()


def test_requests_are_decoded_in_groups_of_any_size(tmp_path):
    """An export decoding in `parallel_loops` groups takes any batch (its size is unknown when traced): fewer images
    than groups (an empty group is skipped) and uneven groups give in-process decoding's images."""
    keras.utils.set_random_seed(0)
    model = it.ImageTransformer(**tiny_kwargs("local_1d", image_shape=(4, 4, 1)))
    images = random_images(3, model.image_shape, seed=3)
    fn, specs = export_lib.signature_functions(model, parallel_loops=2)["complete"]
    complete = tf.function(fn, input_signature=specs)
    for batch in (1, 3):
        seeds = np.arange(4, 4 + batch, dtype=np.int64)
        exported = complete(images[:batch, :2], seeds, np.ones(batch, np.float32))["images"]
        expected = it.complete(model, images[:batch], 2, seed=seeds, jit_compile=True, parallel_loops=1)
        np.testing.assert_array_equal(exported.numpy(), expected.numpy())
    with pytest.raises(export_lib.ExportError, match="--parallel_loops=0 must be a positive integer"):
        export_lib.export_model(model, str(tmp_path / "exported"), parallel_loops=0)
    assert not (tmp_path / "exported").exists()


def test_the_signatures_generating_from_the_top_half_share_one_traced_generation(small_model, tmp_path, monkeypatch):
    """`serving_default`, `serve` and `complete` call one traced generation (it was traced once per signature):
    tracing the generation is most of an export's time."""
    traced = []  # the known length of each generation traced
    original = Decoder.complete_tokens

    def counting(self, tokens, known_length, *args, **kwargs):
        traced.append(known_length)
        return original(self, tokens, known_length, *args, **kwargs)

    monkeypatch.setattr(Decoder, "complete_tokens", counting)
    export_lib.export_model(small_model, str(tmp_path / "exported"))
    known_length = small_model.order.known_length(export_lib.known_rows_for(small_model))
    # `sample`, one signature, generates from nothing (known length 0); the three signatures generating from the top
    # half are traced no more often than it (twice each with this TensorFlow: Keras lists the variables an endpoint
    # uses, then `tf.saved_model.save` traces it again in its save context).
    assert 0 < known_length and set(traced) == {0, known_length}
    assert traced.count(known_length) == traced.count(0), traced


def test_opt_in_xla_export_keeps_its_loop_compiled(tmp_path):
    """`--jit_compile` writes the decoding loop as a function that must be compiled with XLA (what TF Serving's
    `--xla_cpu_compilation_enabled` runs), with float32 caches; loaded back, it completes exactly as in-process XLA
    decoding does. The default export has no such function."""
    keras.utils.set_random_seed(0)
    model = it.ImageTransformer(**tiny_kwargs("local_1d", image_shape=(4, 4, 1)))
    images = random_images(2, model.image_shape, seed=3)
    xla = export_lib.export_model(model, str(tmp_path / "xla"), jit_compile=True)
    plain = export_lib.export_model(model, str(tmp_path / "plain"))

    def must_compile(saved_model_dir):
        saved_model = saved_model_pb2.SavedModel()
        with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
            saved_model.ParseFromString(f.read())
        library = saved_model.meta_graphs[0].graph_def.library
        return [f.signature.name for f in library.function if f.attr["_XlaMustCompile"].b]

    assert must_compile(xla.saved_model_dir) and not must_compile(plain.saved_model_dir)
    complete = tf.saved_model.load(xla.saved_model_dir).signatures["complete"]
    exported = complete(top_half=tf.constant(images[:, :2]), seed=tf.constant([4, 5], tf.int64),
                        temperature=tf.ones([2]))["images"]
    expected = it.complete(model, images, 2, seed=[4, 5], jit_compile=True, cache_dtype="float32")
    np.testing.assert_array_equal(exported.numpy(), expected.numpy())


def test_an_overwrite_killed_between_its_renames_is_recovered_by_the_next_export(small_model, tmp_path):
    # A kill after the old version was moved aside and before the new SavedModel arrived leaves no version 1
    # (TF Serving would not start). The next export to the base path puts the old version back and removes every
    # leftover temporary directory, then writes its own version.
    base = tmp_path / "base"
    first = export_lib.export_model(small_model, str(base))
    saved_model = open(os.path.join(first.saved_model_dir, "saved_model.pb"), "rb").read()
    keras_file = open(first.keras_path, "rb").read()
    interrupted = base / ".tmp-export-1-killed"
    interrupted.mkdir()
    os.rename(first.saved_model_dir, interrupted / "old-1")
    os.rename(first.keras_path, interrupted / "old-1.keras")
    (base / "keras" / "1.keras").write_bytes(b"the new, half-placed keras file")
    (interrupted / "saved_model").mkdir()  # the new SavedModel, never renamed into place
    abandoned = base / ".tmp-export-3-killed"  # an export killed while writing
    abandoned.mkdir()
    (abandoned / "model.keras").write_bytes(b"partial")

    second = export_lib.export_model(small_model, str(base))
    assert second.version == 2
    assert sorted(os.listdir(base)) == ["1", "2", "keras"]
    assert open(os.path.join(first.saved_model_dir, "saved_model.pb"), "rb").read() == saved_model
    assert open(first.keras_path, "rb").read() == keras_file

"""Tests of imagetransformer.train (and configs, distribute): end-to-end runs, resuming, model_dir checks, the
command line's one-line errors, and MirroredStrategy on two logical CPUs.

Training runs in-process through `trainer.train` (what `main` calls) with the `tiny` configuration; what is about
the process itself (exit status, one line on stderr, no traceback, a second logical CPU device) runs in a
subprocess. Nothing touches the network: CIFAR-10 is mocked by `tfds.testing.mock_data`, Fashion-MNIST comes from
Debian's files.
"""

import hashlib
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap

from absl import flags
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import conftest

from imagetransformer import data, models
from imagetransformer.evaluation import evaluator
from imagetransformer.programs import evaluate as evaluate_program
from imagetransformer.programs import train as train_program
from imagetransformer.training import callbacks, checkpoints, configs, distribute, trainer
from imagetransformer.models.image_transformer import ImageTransformer

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isfile(os.path.join(data.DEBIAN_FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz")),
    reason="Debian package dataset-fashion-mnist is not installed")


def tiny(**overrides):
    return configs.get_config("tiny", **overrides)


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    """An empty tfds data_dir (no prepared copy is used by accident)."""
    monkeypatch.delenv(data.FASHION_MNIST_DIR_ENV, raising=False)
    return str(tmp_path / "tfds")


def digest(directory):
    """{relative path: sha256} of every file under `directory` (to show nothing was changed)."""
    result = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                result[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return result


def stored_iterations(model_dir, config):
    """Optimizer steps stored in model_dir/model.weights.h5."""
    model = trainer.build_model(config, (28, 28, 1), tf.distribute.get_strategy())
    model.load_weights(os.path.join(model_dir, checkpoints.WEIGHTS_FILE))
    return int(model.optimizer.iterations)


def scalar_tags(log_dir):
    """{tag: [values]} of the scalar summaries in the event files under `log_dir`."""
    tags = {}
    for root, _, files in os.walk(log_dir):
        for name in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                for value in event.summary.value:
                    tags.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    return tags


class CountSteps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


# ----------------------------------------------------------------------------------------------------------------
# Configurations and flags.
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, image_shape", [
    ("fashion_mnist_small", (28, 28, 1)), ("tiny", (28, 28, 1)), ("tiny", (32, 32, 3)),
    ("cifar10_local_1d", (32, 32, 3)), ("cifar10_local_2d", (32, 32, 3)),
])
def test_named_configs_build_valid_models(name, image_shape):
    config = configs.get_config(name)
    attentions = ["local_1d", "local_2d", "global"] if name in ("fashion_mnist_small", "tiny") else [None]
    for attention in attentions:  # the small configs work with every attention
        overrides = {"attention": attention} if attention else {}
        if attention == "local_2d":
            overrides["conv_stem_layers"] = 0  # the stem needs raster order
        model = config.replace(**overrides).model.build(image_shape)  # the paper-sized ones too (4M weights, ~1 s)
        assert models.name_of(model) == config.model.architecture
        assert models.config_of(model)["image_shape"] == list(image_shape)
        assert models.config_of(model)["attention"] == (attention or config.model.image_transformer.attention)
    assert configs.get_config("cifar10_local_2d").model.image_transformer.attention == "local_2d"
    assert configs.get_config("cifar10_local_1d").data.dataset == "cifar10"


def test_config_lookup_and_overrides():
    config = configs.get_config("tiny", num_layers=3, dataset=None, query_shape=["2", "4"], model=None)
    assert config.model.image_transformer.num_layers == 3 and config.data.dataset == "fashion_mnist"
    assert config.model.image_transformer.query_shape == (2, 4)  # a list flag's strings become the typed pair
    assert configs.get_config("tiny").model.image_transformer.num_layers == 1  # the named config is unchanged
    with pytest.raises(ValueError, match="--config='nope'.*fashion_mnist_small"):
        configs.get_config("nope")
    with pytest.raises(ValueError, match="nope"):
        configs.get_config("tiny", nope=1)
    # A model flag goes to the architecture --model chooses; one it does not take is refused.
    pixelcnn = configs.get_config("tiny", model="pixelcnnpp", dropout=0.25, num_filters=6)
    assert pixelcnn.model.pixelcnnpp.dropout == 0.25 and pixelcnn.model.pixelcnnpp.num_filters == 6
    assert pixelcnn.model.image_transformer.dropout == 0.0
    assert pixelcnn.model.kwargs("generation")["dropout"] == 0.25
    with pytest.raises(ValueError, match="--hidden_size is an argument of image_transformer, not of --model=pixelcnnpp"):
        configs.get_config("fashion_mnist_pixelcnnpp", hidden_size=8)
    # Values are checked when the configuration is made, naming the flag.
    for overrides, message in ((dict(lr_decay="linear"), "--lr_decay='linear' is not supported"),
                               (dict(train_steps=3, steps_per_execution=2), "--train_steps=3 must be a multiple"),
                               (dict(task="super_resolution", conditional="class"), "it takes --conditional=none"),
                               (dict(query_shape=["2"]), "--query_shape=2 must be 2 comma-separated integers")):
        with pytest.raises(ValueError, match=message):
            configs.get_config("tiny", **overrides)
    # config.json's sections, from the configuration.
    data, train = configs.get_config("tiny").sections(image_shape=[28, 28, 1])
    assert data["dataset"] == "fashion_mnist" and data["image_shape"] == [28, 28, 1] and train["train_steps"] == 4
    assert configs.get_config("tiny").flags()["hidden_size"] == 16


def test_flags_override_the_named_config(parsed):
    importlib.import_module("imagetransformer.programs.export")  # --jit_compile with its own default: not the config's
    parsed("--config=tiny", "--num_layers=3", "--query_shape=2,4", "--jit_compile", "--learning_rate=0.5")
    config = train_program.config_from_flags()
    assert config.model.image_transformer.num_layers == 3 and config.model.image_transformer.query_shape == (2, 4)
    assert config.train.jit_compile is True and config.train.learning_rate == 0.5
    assert config.model.image_transformer.hidden_size == configs.TINY.model.image_transformer.hidden_size
    parsed()
    assert train_program.config_from_flags() == configs.FASHION_MNIST_SMALL


# ----------------------------------------------------------------------------------------------------------------
# End-to-end.
# ----------------------------------------------------------------------------------------------------------------
def test_tiny_end_to_end_on_mocked_cifar10(tmp_path, empty_data_dir):
    model_dir = str(tmp_path / "run")
    with tfds.testing.mock_data(num_examples=12):
        result = trainer.train(tiny(dataset="cifar10", data_dir=empty_data_dir, val_examples=6), model_dir,
                             verbose=0)
        assert (result.initial_step, result.final_step) == (0, 4)
        assert result.model.image_shape == (32, 32, 3)
        history = result.history.history
        assert len(history["loss"]) == 2 and all(np.isfinite(history["val_bits_per_dim"]))
        assert set(os.listdir(model_dir)) == {"config.json", "model.weights.h5", "logs"}  # backup/ removed

        config = checkpoints.load_config(model_dir)
        assert config["model"] == models.config_of(result.model)
        assert config["data"]["dataset"] == "cifar10" and config["data"]["image_shape"] == [32, 32, 3]
        assert config["train"]["train_steps"] == 4 and config["train"]["strategy"] == "default"

        loaded = checkpoints.load_model(model_dir)
        for a, b in zip(loaded.get_weights(), result.model.get_weights()):
            np.testing.assert_array_equal(a, b)
        evaluated = evaluator.evaluate(model_dir, split="test", batch_size=5)  # 12 = 5 + 5 + 2
        images = np.stack(list(data.load_images("cifar10", "test", data_dir=empty_data_dir)
                                .dataset.as_numpy_iterator()))
    assert evaluated.num_examples == 12
    expected = float(np.mean(loaded.bits_per_dim(images)))
    assert evaluated.bits_per_dim == pytest.approx(expected, rel=1e-5)

    tags = scalar_tags(os.path.join(model_dir, "logs"))
    for tag in ("epoch_loss", "epoch_bits_per_dim", "epoch_learning_rate", "batch_bits_per_dim"):
        assert tag in tags, sorted(tags)
    lrs = tags["epoch_learning_rate"]
    schedule = result.model.optimizer.learning_rate  # the rate after the last step
    assert lrs[-1] == pytest.approx(float(schedule), rel=1e-5)
    assert len(tags["epoch_bits_per_dim"]) == 4  # train and validation, 2 epochs each


@needs_fashion_mnist
@pytest.mark.parametrize("verbose", [1, 2])
def test_progress_bar_of_an_epoch_stopped_early_shows_the_steps_it_ran(tmp_path, capsys, verbose):
    capsys.readouterr()
    trainer.train(tiny(train_steps=3, steps_per_epoch=2, save_every=1, val_examples=0), str(tmp_path / "run"),
                  verbose=verbose, progress_every_s=1e9)
    printed = re.sub(r"\x1b\[[0-9;]*m|\x08", "", capsys.readouterr().out)  # without colours and backspaces
    bars = [line.strip() for line in printed.replace("\r", "\n").splitlines() if re.match(r"\s*\d+/\d+ ", line)]
    # Epoch 1: 2 steps of 2; epoch 2 stops at --train_steps=3 after 1 step: "1/1", not Keras' "2/2".
    assert bars[-1].startswith("1/1 ") and any(bar.startswith("2/2 ") for bar in bars), bars


@needs_fashion_mnist
def test_fashion_mnist_training_lowers_bits_per_dim(tmp_path, capsys, parsed):
    model_dir = str(tmp_path / "run")
    config = tiny(train_steps=60, steps_per_epoch=30, save_every=30, learning_rate=1e-2, warmup_steps=10,
                  batch_size=8, val_examples=0)
    capsys.readouterr()
    result = trainer.train(config, model_dir, verbose=2, progress_every_s=0)
    assert result.final_step == 60 and result.steps_per_second > 0
    assert os.listdir(os.path.join(model_dir, "logs")) == ["train"]  # no validation with val_examples=0
    # verbose=2 prints progress lines inside the epochs too (here after every step but the first).
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert len(progress) == 59, progress[:3]
    assert re.fullmatch(r"step 60/60 \(100%\): loss [\d.]+, bits_per_dim [\d.]+; [\d.]+ steps/s, 0 s left",
                        progress[-1]), progress[-1]

    untrained = evaluator.evaluate(model_dir, split="test", eval_examples=100, batch_size=32,
                                  model=checkpoints.build_model(model_dir))
    trained = evaluator.evaluate(model_dir, split="test", eval_examples=100, batch_size=32)
    assert trained.num_examples == untrained.num_examples == 100
    # A uniform distribution over 256 values is 8 bits/dim; the untrained mixture is below it (about 6.2 here),
    # and 60 steps of training take off about 2 bits/dim (to about 4.1).
    assert untrained.bits_per_dim < 8.0
    assert trained.bits_per_dim < untrained.bits_per_dim - 1.0, (trained, untrained)
    assert 1.0 < trained.bits_per_dim < 5.0

    # The command line prints the same number on its last line.
    parsed(f"--model_dir={model_dir}", "--eval_examples=100", "--batch_size=32")
    capsys.readouterr()
    evaluate_program.main(["prog"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"test bits/dim: {trained.bits_per_dim:.3f}"


def test_evaluate_cli_prints_bits_per_dim_last(trained_dir, run_program):
    model_dir = trained_dir
    expected = evaluator.evaluate(model_dir, split="test[:7]", batch_size=3).bits_per_dim  # 7 = 3 + 3 + 1
    process = run_program("evaluate", f"--model_dir={model_dir}", "--split=test[:7]", "--batch_size=3", cwd=ROOT)
    assert process.returncode == 0, process.stderr
    lines = process.stdout.strip().splitlines()
    assert lines[-1] == f"test[:7] bits/dim: {expected:.3f}"
    assert lines[-2] == "Evaluated 7 images of fashion_mnist (test[:7])."


# ----------------------------------------------------------------------------------------------------------------
# Resuming.
# ----------------------------------------------------------------------------------------------------------------
class Killed(Exception):
    pass


class KillAt(keras.callbacks.Callback):
    """Simulates a killed process: raises once the optimizer has taken `step` steps."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) >= self.step:
            raise Killed()


class WeightsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = self.model.get_weights()
        self.step = int(self.model.optimizer.iterations)


@needs_fashion_mnist
def test_resume_after_kill_continues_from_the_backup(tmp_path):
    model_dir = str(tmp_path / "run")
    # Epochs of 3 steps (model.weights.h5 at steps 3, 6), backups every 2 steps; killed after step 5.
    config = tiny(train_steps=7, steps_per_epoch=3, save_every=2, val_examples=0)
    with pytest.raises(Killed):
        trainer.train(config, model_dir, verbose=0, callbacks=[KillAt(5)])
    backup = os.path.join(model_dir, checkpoints.BACKUP_DIR, checkpoints.BACKUP_WEIGHTS)
    assert os.path.exists(backup)
    assert stored_iterations(model_dir, config) == 3  # the epoch-end checkpoint is older than the backup
    backed_up = trainer.build_model(config, (28, 28, 1), tf.distribute.get_strategy())
    backed_up.load_weights(backup)
    assert int(backed_up.optimizer.iterations) == 4

    # The same command again: resumes at the backup's step 4 with its weights, and runs exactly 3 more steps.
    counter, start = CountSteps(), WeightsAtStart()
    result = trainer.train(config, model_dir, verbose=0, callbacks=[counter, start])
    assert (result.initial_step, result.final_step, counter.steps) == (4, 7, 3)
    assert start.step == 4
    for a, b in zip(start.weights, backed_up.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not os.path.exists(os.path.join(model_dir, checkpoints.BACKUP_DIR))  # finished: backup deleted
    assert stored_iterations(model_dir, config) == 7

    # Once more: nothing to do, nothing written.
    before = digest(model_dir)
    again = trainer.train(config, model_dir, verbose=0)
    assert (again.initial_step, again.final_step, again.history) == (7, 7, None)
    assert digest(model_dir) == before

    # A larger --train_steps trains on from model.weights.h5, optimizer state included.
    counter = CountSteps()
    more = trainer.train(config.replace(train_steps=9), model_dir, verbose=0, callbacks=[counter])
    assert (more.initial_step, more.final_step, counter.steps) == (7, 9, 2)
    assert checkpoints.load_config(model_dir)["train"]["train_steps"] == 9


@needs_fashion_mnist
def test_resume_falls_back_to_the_previous_backup_when_the_latest_is_cut_off(tmp_path):
    model_dir = str(tmp_path / "run")
    config = tiny(train_steps=6, steps_per_epoch=6, save_every=2, val_examples=0)
    with pytest.raises(Killed):
        trainer.train(config, model_dir, verbose=0, callbacks=[KillAt(5)])
    latest = os.path.join(model_dir, checkpoints.BACKUP_DIR, checkpoints.BACKUP_WEIGHTS)
    assert os.path.exists(latest + checkpoints.PREVIOUS)  # double_checkpoint keeps the backup before the latest
    with open(latest, "r+b") as f:  # killed while writing the latest backup
        f.truncate(100)
    counter = CountSteps()
    result = trainer.train(config, model_dir, verbose=0, callbacks=[counter])
    assert (result.initial_step, result.final_step, counter.steps) == (2, 6, 4)


# ----------------------------------------------------------------------------------------------------------------
# Model directories that do not fit.
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    """A finished tiny run on Fashion-MNIST (module-scoped: read-only for the tests that use it)."""
    if not os.path.isfile(os.path.join(data.DEBIAN_FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz")):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    model_dir = str(tmp_path_factory.mktemp("trained") / "run")
    trainer.train(tiny(train_steps=2, val_examples=0), model_dir, verbose=0)
    return model_dir


def test_refuses_a_model_dir_with_another_model(trained_dir):
    before = digest(trained_dir)
    with pytest.raises(checkpoints.CheckpointError, match=r"hidden_size=16 \(flags: 32\); num_layers=1 \(flags: 2\)"):
        trainer.train(tiny(num_layers=2, hidden_size=32), trained_dir, verbose=0)
    with pytest.raises(checkpoints.CheckpointError, match=r"mixed_precision='float32' \(flags: 'mixed_bfloat16'\)"):
        trainer.train(tiny(mixed_precision="mixed_bfloat16"), trained_dir, verbose=0)
    assert digest(trained_dir) == before


def test_save_weights_skips_non_finite_epochs(tmp_path):
    model = ImageTransformer(image_shape=(4, 4, 1), attention="global", num_layers=1, hidden_size=8, num_heads=2,
                             filter_size=8, num_mixtures=1)
    callback = callbacks.SaveWeights(str(tmp_path))
    callback.set_model(model)
    callback.on_epoch_end(0, {"loss": float("nan"), "bits_per_dim": 1.0})
    assert not os.path.exists(tmp_path / checkpoints.WEIGHTS_FILE)
    callback.on_epoch_end(0, {"loss": 2.0, "bits_per_dim": 1.0})
    assert os.path.exists(tmp_path / checkpoints.WEIGHTS_FILE)
    assert [p for p in os.listdir(tmp_path) if p != checkpoints.WEIGHTS_FILE] == []  # no temporary left over


# ----------------------------------------------------------------------------------------------------------------
# One-line errors.
# ----------------------------------------------------------------------------------------------------------------
def run_main(module, capsys, parsed, *args):
    """Runs `module.main` with flags `args` in-process; returns (exit status, stderr lines)."""
    parsed(*args)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        module.main(["prog"])
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def assert_one_line_error(code, lines, *words):
    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "Traceback" not in lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("args, words", [
    (["--dataset=no_such_dataset"], ["--dataset=no_such_dataset", "Unknown dataset", "fashion_mnist"]),
    (["--block_length=100"], ["--block_length=100", "784", "divisor"]),
    (["--attention=local_2d", "--query_shape=8,16"], ["--query_shape", "(28, 28)"]),
    (["--query_shape=8"], ["--query_shape=8", "2 comma-separated integers"]),
    (["--hidden_size=30", "--num_heads=4"], ["--hidden_size=30", "--num_heads=4"]),
    (["--tpu=my-tpu"], ["--tpu='my-tpu'", "--strategy=tpu"]),
    (["--val_split=validation"], ["--val_split=validation", "Unknown split", "test"]),
    (["--steps_per_execution=3"], ["--train_steps=4", "multiple of --steps_per_execution=3"]),
    (["--task=super_resolution", "--model=pixelcnnpp"], ["--task=super_resolution needs --model=image_transformer"]),
    (["--task=super_resolution", "--scale=3"], ["--scale=3 must divide"]),
])
def test_train_bad_flags_fail_with_one_line(args, words, tmp_path, capsys, parsed):
    model_dir = tmp_path / "run"
    code, lines = run_main(train_program, capsys, parsed, "--config=tiny", f"--model_dir={model_dir}", *args)
    assert_one_line_error(code, lines, *words)
    assert not model_dir.exists()  # nothing written


def test_train_without_model_dir_fails_with_one_line(capsys, parsed):
    code, lines = run_main(train_program, capsys, parsed, "--config=tiny")
    assert_one_line_error(code, lines, "--model_dir is required")


def test_train_refuses_another_model_and_corrupt_checkpoints(trained_dir, tmp_path, capsys, parsed):
    before = digest(trained_dir)
    code, lines = run_main(train_program, capsys, parsed, "--config=tiny", f"--model_dir={trained_dir}", "--num_heads=4")
    assert_one_line_error(code, lines, f"--model_dir={trained_dir}", "num_heads=2 (flags: 4)")
    assert digest(trained_dir) == before

    for damaged, content in (("model.weights.h5", b"not hdf5"), ("config.json", b"{not json")):
        model_dir = tmp_path / damaged
        os.system(f"cp -r {trained_dir} {model_dir}")
        (model_dir / damaged).write_bytes(content)
        before = digest(model_dir)
        code, lines = run_main(train_program, capsys, parsed, "--config=tiny", f"--model_dir={model_dir}",
                               "--train_steps=4")
        assert_one_line_error(code, lines, str(model_dir / damaged), "corrupt")
        assert digest(model_dir) == before


def test_evaluate_errors_are_one_line(trained_dir, tmp_path, capsys, parsed):
    missing = tmp_path / "missing"
    code, lines = run_main(evaluate_program, capsys, parsed, f"--model_dir={missing}")
    assert_one_line_error(code, lines, f"--model_dir={missing}", "does not exist")
    code, lines = run_main(evaluate_program, capsys, parsed)
    assert_one_line_error(code, lines, "--model_dir is required")
    code, lines = run_main(evaluate_program, capsys, parsed, f"--model_dir={trained_dir}", "--split=validation")
    assert_one_line_error(code, lines, "--split=validation", "Unknown split", "test")

    corrupt = tmp_path / "corrupt"
    os.system(f"cp -r {trained_dir} {corrupt}")
    with open(corrupt / checkpoints.WEIGHTS_FILE, "r+b") as f:
        f.truncate(500)
    code, lines = run_main(evaluate_program, capsys, parsed, f"--model_dir={corrupt}")
    assert_one_line_error(code, lines, str(corrupt / checkpoints.WEIGHTS_FILE), "corrupt")


@pytest.mark.parametrize("args, words", [
    (["--attention=bad"], ["--attention=bad", "local_1d|local_2d|global"]),
    (["--distribution=gaussian"], ["--distribution=gaussian", "dmol|categorical"]),
    (["--block_length=0"], ["--block_length=0", "positive"]),
    (["--strategy=parameter_server"], ["--strategy=parameter_server", "mirrored"]),
    (["--config=huge"], ["--config=huge", "fashion_mnist_small"]),
    (["--mixed_precision=float16"], ["--mixed_precision=float16", "mixed_float16"]),
])
def test_bad_flag_values_fail_parsing_with_one_line(args, words, capsys, parsed):
    with pytest.raises(SystemExit) as exit_info:
        parsed(*args)
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err.strip().splitlines(), *words)


def run_cli(module, *args, env=None):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})))


def errors_of(process):
    return process.stderr.strip().splitlines()


# A line of TensorFlow's C++ logging (absl's `I1204 12:00:00.000000 ...` / `E0000 ...` prefix, its notice before
# logging is initialized, the CPU feature guard's second line).
TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:|WARNING: All log messages before absl|To enable the following)")


def tf_log_lines(text):
    return [line for line in text.splitlines() if TF_LOG_LINE.match(line)]


def test_programs_print_only_their_own_lines(tmp_path):
    # The README's commands as a user runs them (no TF_CPP_MIN_LOG_LEVEL set): a short training with XLA, its
    # evaluation, a completion and --help print no line of TensorFlow's C++ logging on this machine (the CPU build of
    # TensorFlow that scripts/setup.sh installs where no NVIDIA driver is present).
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    model_dir = tmp_path / "run"

    def run(*args, extra_env=None):
        return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env=dict(env, PYTHONPATH=ROOT, **(extra_env or {})))

    for args in [
        ["-m", "imagetransformer.train", "--config=tiny", f"--model_dir={model_dir}", "--train_steps=2",
         "--steps_per_epoch=2", "--jit_compile", "--verbose=2"],
        ["-m", "imagetransformer.evaluate", f"--model_dir={model_dir}", "--split=test[:8]", "--batch_size=8"],
        ["-m", "imagetransformer.complete", f"--model_dir={model_dir}", f"--output={tmp_path / 'c.png'}",
         "--num_images=1"],
    ]:
        process = run(*args)
        assert process.returncode == 0, process.stderr
        assert tf_log_lines(process.stderr + process.stdout) == [], args
    # --help of two programs (absl: usage on stdout, exit status 1); the others build theirs the same way
    # (`cli.run_program`).
    for program, own_flag in [("train", "--config"), ("super_resolve", "--temperatures")]:
        process = run("-m", f"imagetransformer.{program}", "--help")
        assert own_flag in process.stdout and "--model_dir" in process.stdout, process.stdout
        assert tf_log_lines(process.stderr + process.stdout) == [], program
    # TensorFlow's errors still show, and an explicit level in the environment wins: at 0 the same XLA compilation
    # logs its notes (so the checks above can see them).
    program = ("import imagetransformer, os, tensorflow as tf; print(os.environ['TF_CPP_MIN_LOG_LEVEL']); "
               "tf.function(jit_compile=True)(lambda x: x + 1)(tf.constant(1.0))")
    verbose = run("-c", program, extra_env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert verbose.stdout.split() == ["0"] and tf_log_lines(verbose.stderr), verbose.stderr


def test_cli_processes_exit_with_one_line_and_no_traceback(tmp_path):
    model_dir = tmp_path / "run"
    for module, args, words in [
        ("imagetransformer.train", ["--attention=bad", f"--model_dir={model_dir}"], ["--attention=bad"]),
        ("imagetransformer.evaluate", [f"--model_dir={model_dir}"], [f"--model_dir={model_dir}"]),
    ]:
        process = run_cli(module, *args)
        assert "Traceback" not in process.stderr, process.stderr
        assert_one_line_error(process.returncode, errors_of(process), *words)
        assert process.stdout.strip() == ""
    assert not model_dir.exists()


# ----------------------------------------------------------------------------------------------------------------
# Strategies.
# ----------------------------------------------------------------------------------------------------------------
def test_get_strategy_default_and_refusals():
    assert distribute.get_strategy("default") is tf.distribute.get_strategy()
    assert distribute.get_strategy("mirrored").num_replicas_in_sync == len(tf.config.list_logical_devices("CPU"))
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        distribute.get_strategy("multi_worker")
    with pytest.raises(ValueError, match="not supported.*default, mirrored, multi_worker, tpu"):
        distribute.get_strategy("horovod")


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from imagetransformer.training import configs, trainer
    model_dir = sys.argv[1]
    try:
        trainer.train(configs.get_config("tiny", batch_size=3), model_dir, strategy="mirrored", verbose=0)
    except ValueError as e:
        print("ODD BATCH:", e)
    config = configs.get_config("tiny", train_steps=3, steps_per_epoch=3, batch_size=4, val_examples=6)
    result = trainer.train(config, model_dir, strategy="mirrored", verbose=0)
    variable = result.model.trainable_variables[0].value
    resumed = trainer.train(config.replace(train_steps=5), model_dir, strategy="mirrored", verbose=0)
    print("RESULT", json.dumps({
        "resumed": [resumed.initial_step, resumed.final_step],
        "replicas": json.load(open(os.path.join(model_dir, "config.json")))["train"]["replicas"],
        "steps": result.final_step,
        "mirrored": type(variable).__name__,
        "loss": result.history.history["loss"][-1],
        "val": result.history.history["val_bits_per_dim"][-1],
    }))
""")


@needs_fashion_mnist
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    process = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path / "run")], cwd=ROOT,
                             capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert process.returncode == 0, process.stderr[-3000:]
    assert "ODD BATCH: --batch_size=3 must be a multiple of the 2 replicas" in process.stdout
    import json
    result = json.loads(process.stdout.split("RESULT", 1)[1])
    assert result["replicas"] == 2 and result["steps"] == 3
    assert result["resumed"] == [3, 5]  # restored from model.weights.h5 into mirrored variables
    assert result["mirrored"] == "MirroredVariable", result
    assert np.isfinite(result["loss"]) and np.isfinite(result["val"])


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@needs_fashion_mnist
def test_mixed_precision(policy, tmp_path):
    result = trainer.train(tiny(mixed_precision=policy, train_steps=2, val_examples=4), str(tmp_path / "run"),
                         verbose=0)
    model = result.model
    assert model.dtype_policy.name == policy
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    assert result.final_step == 2 and np.isfinite(result.history.history["loss"][-1])
    images = np.zeros((2, 28, 28, 1), np.uint8)
    assert model(images).dtype == tf.float32  # the head computes in float32


# ----------------------------------------------------------------------------------------------------------------
# The default configuration from the command line (minutes: run with -m slow).
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@needs_fashion_mnist
def test_default_command_line_trains_then_evaluates(tmp_path):
    model_dir = tmp_path / "demo"
    process = run_cli("imagetransformer.train", f"--model_dir={model_dir}", "--train_steps=40",
                      "--steps_per_epoch=20", "--val_examples=64", "--verbose=2")
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Trained steps 0..40" in process.stdout
    config = checkpoints.load_config(str(model_dir))
    assert config["model"]["attention"] == "local_1d" and config["model"]["block_length"] == 112
    process = run_cli("imagetransformer.evaluate", f"--model_dir={model_dir}", "--eval_examples=200")
    assert process.returncode == 0, process.stderr[-3000:]
    bits = float(process.stdout.strip().splitlines()[-1].split(": ")[1])
    assert 1.0 < bits < 6.0


def test_stop_after_minutes_ends_fit_early():
    import keras
    import numpy as np

    import imagetransformer as it
    from conftest import tiny_kwargs
    from imagetransformer.training.callbacks import StopAfterMinutes

    model = it.ImageTransformer(**tiny_kwargs(image_shape=(4, 4, 1)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = np.zeros((64, 4, 4, 1), np.uint8)
    model.fit(images, batch_size=4, epochs=3, verbose=0, callbacks=[StopAfterMinutes(0.0)])
    assert int(model.optimizer.iterations) == 1  # stopped after the first step of the first epoch


def test_completion_images_are_written_to_tensorboard(tmp_path):
    import glob

    import numpy as np
    from tensorboard.backend.event_processing import event_accumulator

    import imagetransformer as it
    from conftest import tiny_kwargs
    from imagetransformer.evaluation import visualize

    model = it.ImageTransformer(**tiny_kwargs("local_1d", image_shape=(4, 4, 1)))
    model.compile(optimizer="adam")
    images = np.random.RandomState(0).randint(0, 256, (2, 4, 4, 1)).astype(np.uint8)
    log_dir = str(tmp_path / "images")
    model.fit(images, batch_size=2, epochs=2, verbose=0,
              callbacks=[visualize.CompletionImages(images, log_dir, scale=1)])
    import tensorflow as tf

    events = event_accumulator.EventAccumulator(glob.glob(f"{log_dir}/events.*")[0], size_guidance={"tensors": 0})
    events.Reload()
    written = events.Tensors("completions")  # TF2 image summaries: [width, height, PNG] string tensors
    assert [e.step for e in written] == [1, 2]  # one grid per epoch, numbered by optimizer step
    width, height, png = tf.make_ndarray(written[-1].tensor_proto)
    grid = tf.io.decode_png(png).numpy()
    assert (int(width), int(height)) == (3 * 6 + 2, 2 * 6 + 2)  # 2 rows of 3 tiles of 4 px + padding
    np.testing.assert_array_equal(grid[2:6, 14:18], images[0])  # the last tile of the first row: the original


# ----------------------------------------------------------------------------------------------------------------
# One training run per model directory.
# ----------------------------------------------------------------------------------------------------------------
_HOLD = """
import sys, time
from imagetransformer.training import checkpoints
with checkpoints.exclusive(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(600)
"""


def _holder(model_dir):
    process = subprocess.Popen([sys.executable, "-c", _HOLD, model_dir], cwd=conftest.REPO,
                               stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=conftest.REPO))
    assert process.stdout.readline().strip() == "holding"
    return process


@needs_fashion_mnist
def test_a_second_run_on_a_model_dir_in_use_is_refused_and_a_crashed_one_leaves_no_lock(tmp_path):
    model_dir = str(tmp_path / "run")
    holder = _holder(model_dir)
    try:
        with pytest.raises(checkpoints.CheckpointError,
                           match=rf"in use by another training run \(pid {holder.pid} on .*choose another"):
            trainer.train(configs.get_config("tiny", train_steps=2, val_examples=0), model_dir, verbose=0)
        assert os.listdir(model_dir) == [checkpoints.RUN_FILE]  # the refused run wrote nothing
    finally:
        holder.kill()  # a crash: no cleanup runs in the holder
        holder.wait()
    result = trainer.train(configs.get_config("tiny", train_steps=2, val_examples=0), model_dir, verbose=0)
    assert result.final_step == 2
    assert checkpoints.RUN_FILE not in os.listdir(model_dir)


def test_temporaries_of_a_killed_run_are_removed_when_the_next_run_holds_the_directory(tmp_path):
    # atomic_path's files (`.model.weights.h5.<random>.tmp.weights.h5`) that a kill left; the user's files stay.
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    leftovers = [".model.weights.h5.k2j4x9.tmp.weights.h5", ".config.json.a8b1c2.tmp"]
    for name in leftovers + ["notes.txt", ".hidden"]:
        (model_dir / name).write_text("x")
    with checkpoints.exclusive(str(model_dir)):
        assert sorted(os.listdir(model_dir)) == sorted([".hidden", "notes.txt", checkpoints.RUN_FILE])
    assert sorted(os.listdir(model_dir)) == [".hidden", "notes.txt"]


@pytest.mark.parametrize("edit", [{"block_length": 16, "memory_length": 16}, {"attention": "global"},
                                  {"num_layers": 1}])
def test_an_edited_config_json_is_refused_not_loaded_as_another_model(tmp_path, edit):
    """Weights written for one architecture never load into another described by an edited config.json: the
    configuration recorded in the weights file must match, and every stored weight must be used."""
    kwargs = conftest.tiny_kwargs("local_1d", image_shape=(8, 8, 1), block_length=8, memory_length=8)
    model = ImageTransformer(**kwargs)
    model_dir = str(tmp_path)
    checkpoints.save_config(model_dir, models.config_of(model))
    checkpoints.save_weights(model, model_dir)
    checkpoints.load_model(model_dir)  # as written: loads
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    config["model"].update(edit)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config, f)
    with pytest.raises(checkpoints.CheckpointError, match="was config.json edited"):
        checkpoints.load_model(model_dir)
    if "num_layers" in edit:  # weights written before the configuration was recorded: counted instead
        import h5py  # pylint: disable=import-outside-toplevel

        with h5py.File(os.path.join(model_dir, checkpoints.WEIGHTS_FILE), "a") as f:
            del f.attrs[checkpoints.CONFIG_ATTRIBUTE]
        with pytest.raises(checkpoints.CheckpointError, match=r"holds 26 weights .* has 16"):
            checkpoints.load_model(model_dir)


@needs_fashion_mnist
def test_tensorboard_epoch_and_batch_summaries_share_the_step_axis(tmp_path):
    """Epoch scalars are written at the optimizer step the epoch ended on, like batch scalars, also after a resume."""
    import glob  # pylint: disable=import-outside-toplevel

    from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=import-outside-toplevel

    model_dir = str(tmp_path)
    trainer.train(tiny(train_steps=4, steps_per_epoch=2, val_examples=4), model_dir, verbose=0)
    trainer.train(tiny(train_steps=6, steps_per_epoch=2, val_examples=4), model_dir, verbose=0)  # resumed
    steps = {}  # (train | validation, tag) -> steps
    for path in glob.glob(os.path.join(model_dir, "logs", "*", "events.*")):
        events = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
        events.Reload()
        for tag in events.Tags()["tensors"]:
            key = (os.path.basename(os.path.dirname(path)), tag)
            steps.setdefault(key, set()).update(e.step for e in events.Tensors(tag))
    assert steps[("train", "batch_loss")] == {2, 4, 6}, steps
    assert steps[("train", "epoch_loss")] == {2, 4, 6}, steps
    assert steps[("validation", "epoch_bits_per_dim")] == {2, 4, 6}, steps

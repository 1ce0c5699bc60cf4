"""Bad-input sweep: malformed inputs to the Python API, the commands, the exported signatures and the client.

Each case must fail with a clear error (the expected exception, or exit status 1 with one `error:` line and no
traceback) whose message names the problem, and none may change the model directory or the export. The table in
`docs/robustness.md` lists the same cases with what each returns; `python tests/test_robustness.py` prints them.
"""

import hashlib
import math
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import imagetransformer as it
from imagetransformer import data
from imagetransformer.training import checkpoints, configs, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(data.DEBIAN_FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz")),
    reason="Debian package dataset-fashion-mnist is not installed")

IMAGES = np.zeros([2, 28, 28, 1], np.uint8)


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


def _digest(directory):
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(directory)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(path.encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A trained tiny Fashion-MNIST model directory and its export, with their digests before the sweep."""
    root = tmp_path_factory.mktemp("robustness")
    model_dir, export_dir = str(root / "model"), str(root / "export")
    keras.utils.set_random_seed(0)
    trainer.train(configs.get_config("tiny", train_steps=2, val_examples=0), model_dir, verbose=0)
    result = subprocess.run([sys.executable, "-m", "imagetransformer.export", f"--model_dir={model_dir}",
                             f"--export_dir={export_dir}"], cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (root / "notes.txt").write_text("not an image\n")
    artifacts = {"root": str(root), "model_dir": model_dir, "export_dir": export_dir,
                 "model": checkpoints.load_model(model_dir),
                 "loaded": tf.saved_model.load(os.path.join(export_dir, "1"))}
    artifacts["digests"] = (_digest(model_dir), _digest(export_dir))
    yield artifacts
    assert (_digest(model_dir), _digest(export_dir)) == artifacts["digests"], "the sweep changed model_dir or export"


# ----------------------------------------------------------------------------------------------------------------
# The cases: (id, what is wrong, surface, expected error, words the message must hold).
# ----------------------------------------------------------------------------------------------------------------
def _complete(a, images=IMAGES, **kwargs):
    return it.complete(a["model"], images, **{"known_rows": 14, "seed": 0, **kwargs})


def _signature(name, **inputs):
    return lambda a: a["loaded"].signatures[name](**inputs)


API = [
    ("float_images", "float32 images to `complete`", lambda a: _complete(a, IMAGES.astype(np.float32)),
     TypeError, ["integer", "float32"]),
    ("wrong_image_size", "27x28 images to `complete`", lambda a: _complete(a, IMAGES[:, 1:]),
     ValueError, ["28, 28, 1", "27"]),
    ("negative_known_rows", "`known_rows=-1`", lambda a: _complete(a, known_rows=-1), ValueError, ["known_rows"]),
    ("huge_known_rows", "`known_rows=1000`", lambda a: _complete(a, known_rows=1000), ValueError, ["known_rows"]),
    ("nan_temperature", "`temperature=nan`", lambda a: _complete(a, temperature=math.nan),
     ValueError, ["temperature", "finite"]),
    ("zero_temperature", "`temperature=0`", lambda a: _complete(a, temperature=0.0), ValueError, ["> 0"]),
    ("empty_batch", "a batch of 0 images to `complete`", lambda a: _complete(a, IMAGES[:0]),
     ValueError, ["at least one image"]),
    ("zero_samples", "`sample(batch_size=0)`", lambda a: it.sample(a["model"], batch_size=0),
     ValueError, ["batch_size=0"]),
    ("float_log_prob", "float images to `log_prob`", lambda a: a["model"].log_prob(IMAGES.astype(np.float32)),
     TypeError, ["integer"]),
    ("bad_block_length", "`block_length=100` for 28x28 images",
     lambda a: it.ImageTransformer(image_shape=(28, 28, 1), block_length=100), ValueError, ["block_length=100", "784"]),
    ("two_channels", "`image_shape=(28, 28, 2)`", lambda a: it.ImageTransformer(image_shape=(28, 28, 2)),
     ValueError, ["channels 1", "3"]),
]

SIGNATURES = [
    ("signature_wrong_height", "`serving_default` with a 13-row top half",
     _signature("serving_default", top_half=tf.zeros([1, 13, 28, 1], tf.uint8)),
     tf.errors.InvalidArgumentError, ["top_half must be [batch, 14, 28, 1] uint8"]),
    ("signature_wrong_channels", "`serving_default` with 3 channels",
     _signature("serving_default", top_half=tf.zeros([1, 14, 28, 3], tf.uint8)),
     tf.errors.InvalidArgumentError, ["top_half must be [batch, 14, 28, 1] uint8"]),
    ("signature_float_input", "`serving_default` with float32 pixels",
     _signature("serving_default", top_half=tf.zeros([1, 14, 28, 1], tf.float32)),
     tf.errors.InvalidArgumentError, ["expected to be a uint8 tensor but is a float tensor"]),
    ("signature_empty_batch", "`serving_default` with a batch of 0 top halves",
     _signature("serving_default", top_half=tf.zeros([0, 14, 28, 1], tf.uint8)),
     tf.errors.InvalidArgumentError, ["top_half must be", "batch >= 1", "got shape] [0 14 28 1]"]),
    ("signature_no_seeds", "`sample` with no seeds", _signature("sample", seed=tf.zeros([0], tf.int64)),
     tf.errors.InvalidArgumentError, ["one seed per image, batch >= 1"]),
    ("signature_seed_count", "`complete` with 1 seed for 2 images",
     _signature("complete", top_half=tf.zeros([2, 14, 28, 1], tf.uint8), seed=tf.constant([1], tf.int64),
                temperature=tf.ones([2])),
     tf.errors.InvalidArgumentError, ["seed"]),
    ("signature_nan_temperature", "`complete` with temperature NaN",
     _signature("complete", top_half=tf.zeros([1, 14, 28, 1], tf.uint8), seed=tf.constant([1], tf.int64),
                temperature=tf.constant([math.nan])),
     tf.errors.InvalidArgumentError, ["temperature"]),
    ("signature_unknown_name", "signature `predict` (not exported)", _signature("predict"), KeyError, ["predict"]),
]


def _command(module, *flags):
    return lambda a: subprocess.run([sys.executable, "-m", module, *(f.format(**a) for f in flags)], cwd=ROOT,
                                    env=_env(), capture_output=True, text=True, timeout=300)


COMMANDS = [
    ("train_zero_batch", "`train --batch_size=0`", _command("imagetransformer.train", "--model_dir={model_dir}",
                                                            "--config=tiny", "--batch_size=0"),
     None, ["--batch_size"]),
    ("train_other_model", "`train` on the model_dir with other model flags",
     _command("imagetransformer.train", "--model_dir={model_dir}", "--config=tiny", "--hidden_size=32"),
     None, ["holds a different model", "hidden_size"]),
    ("train_unknown_dataset_version", "`train --dataset=fashion_mnist:99.0.0`",
     _command("imagetransformer.train", "--model_dir={root}/v99", "--config=tiny", "--dataset=fashion_mnist:99.0.0"),
     None, ["not 99.0.0", "3.0.1 only"]),
    ("evaluate_missing_dir", "`evaluate --model_dir=` a missing directory",
     _command("imagetransformer.evaluate", "--model_dir={root}/nothing"), None, ["nothing"]),
    ("complete_huge_known_rows", "`complete --known_rows=100`",
     _command("imagetransformer.complete", "--model_dir={model_dir}", "--output={root}/c.png", "--known_rows=100"),
     None, ["known_rows"]),
    ("complete_nan_temperature", "`complete --temperature=nan`",
     _command("imagetransformer.complete", "--model_dir={model_dir}", "--output={root}/c.png", "--temperature=nan"),
     None, ["temperature"]),
    ("export_negative_version", "`export --version=-1`",
     _command("imagetransformer.export", "--model_dir={model_dir}", "--export_dir={export_dir}", "--version=-1"),
     None, ["version"]),
    ("export_existing_version", "`export` over version 1 without `--overwrite`",
     _command("imagetransformer.export", "--model_dir={model_dir}", "--export_dir={export_dir}", "--version=1"),
     None, ["--overwrite"]),
    ("client_not_an_image", "`imagetransformer_serving.client --image=` a text file",
     _command("imagetransformer_serving.client", "--image={root}/notes.txt", "--output={root}/o.png"), None,
     ["notes.txt"]),
    ("client_missing_image", "`imagetransformer_serving.client --image=` a missing file",
     _command("imagetransformer_serving.client", "--image={root}/none.png", "--output={root}/o.png"), None,
     ["none.png"]),
    ("client_no_server", "`imagetransformer_serving.client` with no server listening",
     _command("imagetransformer_serving.client", "--server=127.0.0.1:9", "--signature=sample", "--output={root}/o.png",
              "--timeout=5"), None, ["127.0.0.1:9"]),
]

CASES = API + SIGNATURES + COMMANDS


def run_case(case, a):
    """Runs one case; returns the one-line message it produced (asserting it failed the expected way)."""
    _, _, call, error, words = case
    if error is None:  # a command: exit status 1, one `error:` line, no traceback
        result = call(a)
        assert result.returncode == 1, (result.returncode, result.stdout[-1000:], result.stderr[-2000:])
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, result.stderr[-3000:]
        message = lines[0]
    else:
        with pytest.raises(error) as raised:
            call(a)
        message = " ".join(str(raised.value).split())
        if "assertion failed:" in message:  # keep the graph check's own message, as TF Serving returns it
            message = message[message.index("assertion failed:"):]
    for word in words:
        assert word in message, (word, message)
    return message


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_refused_clearly(case, artifacts):
    run_case(case, artifacts)


if __name__ == "__main__":  # prints the table of docs/robustness.md
    import pathlib
    import tempfile

    class _Factory:
        @staticmethod
        def mktemp(name):
            return pathlib.Path(tempfile.mkdtemp(prefix=name))

    generator = artifacts.__wrapped__(_Factory())
    found = next(generator)
    print("| case | input | surface | returns |\n|---|---|---|---|")
    for group, cases in (("Python API", API), ("exported signature", SIGNATURES), ("command", COMMANDS)):
        for case in cases:
            message = run_case(case, found).replace(found["root"], "<tmp>")[:220].replace("|", "\\|")
            kind = "exit status 1, stderr" if case[3] is None else (
                case[3].__name__ if isinstance(case[3], type) else " / ".join(e.__name__ for e in case[3]))
            print(f"| `{case[0]}` | {case[1]} | {group} | {kind}: `{message}` |")
    shutil.rmtree(found["root"], ignore_errors=True)

"""Shared test setup: quiet TensorFlow on one thread per op, deterministic seeds, and tiny model configurations."""

import contextlib
import importlib
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One thread per TensorFlow op in the test processes and (inherited) the programs and servers they start: the xdist
# workers (three on two cores, see test.sh), each also starting subprocesses, otherwise oversubscribe the cores
# (single tests stalled at up to 15x their time alone), and the tests' tiny ops gain nothing from being split across
# threads.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from imagetransformer.export import DEFAULT_CACHE_DTYPE  # noqa: E402
from imagetransformer.programs import cli  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield


def tiny_kwargs(attention="global", distribution="dmol", image_shape=(4, 4, 3), **overrides):
    """Constructor arguments of a tiny ImageTransformer for tests (blocks sized to exercise the locality)."""
    height, width, channels = image_shape
    cols = width * channels if distribution == "categorical" else width
    kwargs = dict(
        image_shape=image_shape, attention=attention, num_layers=2, hidden_size=16, num_heads=2, filter_size=24,
        dropout=0.0, block_length=cols, memory_length=cols, query_shape=(2, cols // 2),
        memory_flange=(1, 1), distribution=distribution, num_mixtures=3,
    )
    kwargs.update(overrides)
    return kwargs


# How the exported signatures decode (graph mode, the export's cache dtype): `it.complete(..., **AS_EXPORTED)`
# reproduces a SavedModel's images bit for bit.
AS_EXPORTED = {"jit_compile": False, "cache_dtype": DEFAULT_CACHE_DTYPE}


def random_images(batch, image_shape, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (batch, *image_shape)).astype(np.uint8)


def run_python(*args, cwd, pythonpath=REPO, timeout=600):
    """Runs `python *args` in a fresh process in `cwd`; the checkout importable unless `pythonpath=None` (then only
    the installed packages are: the way TF Serving or another project loads an export)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def parsed():
    """Parses command-line flags for an in-process run; restores the defaults afterwards."""

    def parse(*args):
        flags.FLAGS.unparse_flags()
        return cli.parse_flags(["prog", *args])

    yield parse
    flags.FLAGS.unparse_flags()
    flags.FLAGS.mark_as_parsed()


@pytest.fixture
def run_program(capsys, parsed):
    """Runs `python -m imagetransformer.NAME *args` in this process (the program module's `main` on the parsed
    flags, in `cwd`): `run_program("train", "--config=tiny", ..., cwd=tmp_path)` returns a `CompletedProcess` with
    the exit status and what it printed, as `run_python` does, without a fresh process's seconds of imports. The
    programs' own start-up (`--help`, flag errors, log lines) is tested in real processes in test_train.py."""

    def run(name, *args, cwd):
        module = importlib.import_module(f"imagetransformer.programs.{name}")
        parsed(*args)
        capsys.readouterr()
        with contextlib.chdir(cwd):
            try:
                code = module.main(["prog"]) or 0
            except SystemExit as e:
                code = e.code
        printed = capsys.readouterr()
        return subprocess.CompletedProcess([name, *args], code, printed.out, printed.err)

    return run

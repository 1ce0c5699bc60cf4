"""What a model directory holds, and how to read and write it without ever leaving half-written files.

```
model_dir/
  config.json         {"model": {"model": "image_transformer" | "pixelcnnpp", constructor kwargs}, "data", "train"}
  model.weights.h5    the latest weights (Keras `save_weights` format)
  backup/             BackupAndRestore state of an interrupted run
  logs/               TensorBoard
```
Evaluation, sampling and export rebuild the model from `config.json` and load `model.weights.h5`: `--model_dir`
alone is enough. Every file is written to a temporary name in the same directory and renamed into place, so a
crash leaves either the old file or the new one.
"""

import contextlib
import json
import os
import tempfile

from imagetransformer import models

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"


class CheckpointError(ValueError):
    """A model directory that is missing, incomplete or corrupt."""


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}", dir=directory)
    os.close(fd)
    os.remove(tmp)  # writers (h5py, keras) want to create the file themselves
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def model_config(model):
    """The constructor arguments of `model` (JSON-serializable) and its architecture under `"model"`."""
    return models.config_of(model)


def save_config(model_dir, model_kwargs, **sections):
    """Writes `config.json`: `{"model": model_kwargs, **sections}` (each section a JSON-serializable dict)."""
    with atomic_path(os.path.join(model_dir, CONFIG_FILE)) as tmp:
        with open(tmp, "w") as f:
            json.dump({"model": model_kwargs, **sections}, f, indent=2, sort_keys=True)


def load_config(model_dir):
    """The whole `config.json` of `model_dir` as a dict."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isdir(model_dir):
        raise CheckpointError(f"--model_dir={model_dir} does not exist; train a model into it first.")
    if not os.path.exists(path):
        raise CheckpointError(f"{path} is missing: {model_dir} is not a model directory written by training.")
    try:
        with open(path) as f:
            config = json.load(f)
        config["model"].setdefault("model", models.DEFAULT_MODEL)  # written before there was a choice
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} is corrupt ({e}); restore it or train again.") from e
    return config


def build_model(model_dir):
    """An untrained model (`ImageTransformer`, `PixelCNNPlusPlus`) with the configuration stored in `model_dir`."""
    path = os.path.join(model_dir, CONFIG_FILE)
    try:
        return models.build(**load_config(model_dir)["model"])
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path} holds an invalid model configuration: {e}") from e


def save_weights(model, model_dir):
    """Writes `model_dir/model.weights.h5` atomically."""
    with atomic_path(os.path.join(model_dir, WEIGHTS_FILE), suffix=".weights.h5") as tmp:
        model.save_weights(tmp)


def load_model(model_dir):
    """The model of `model_dir` with its latest weights.

    Raises:
        CheckpointError: the directory, its configuration or its weights are missing or corrupt.
    """
    model = build_model(model_dir)
    path = os.path.join(model_dir, WEIGHTS_FILE)
    if not os.path.exists(path):
        raise CheckpointError(f"{path} is missing: no trained weights in {model_dir} (has training saved yet?).")
    try:
        model.load_weights(path)
    except Exception as e:  # h5py/keras raise many types for damaged files
        raise CheckpointError(
            f"{path} is corrupt or does not match config.json ({type(e).__name__}: {e}); restore it from a "
            "backup or train again."
        ) from e
    return model

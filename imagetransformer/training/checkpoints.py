"""What a model directory holds, and how to read and write it without ever leaving half-written files.

```
model_dir/
  config.json         {"model": {"model": "image_transformer" | "pixelcnnpp", constructor kwargs}, "data", "train"}
  model.weights.h5    the latest weights (Keras `save_weights` format)
  backup/             BackupAndRestore state of an interrupted run
  logs/               TensorBoard
```
A preset folder (`imagetransformer.presets`) is a model directory too: `config.json` and `model.keras` (the whole
model) instead of `model.weights.h5`.
Evaluation, sampling and export rebuild the model from `config.json` and load `model.weights.h5`: `--model_dir`
alone is enough. Every file is written to a temporary name in the same directory and renamed into place, so a
crash leaves either the old file or the new one.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time

import h5py
import keras

from imagetransformer import models

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
MODEL_FILE = "model.keras"  # a preset's whole model


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


# The temporary files `atomic_path` makes: `.<name>.<random>.tmp<suffix>`.
_TEMPORARY = re.compile(r"\..+\.[^.]+\.tmp[^/]*")


def remove_leftover_temporaries(directory):
    """Removes the temporary files that `atomic_path` left in `directory` when its process was killed (call it
    only while no other process can be writing there). Returns their names."""
    removed = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if _TEMPORARY.fullmatch(name) and os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
            removed.append(name)
    return removed


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


# An attribute of `model.weights.h5`: the model configuration the weights were written for (JSON).
CONFIG_ATTRIBUTE = "imagetransformer_model"


def save_weights(model, model_dir):
    """Writes `model_dir/model.weights.h5` atomically, recording the model's configuration in it."""
    with atomic_path(os.path.join(model_dir, WEIGHTS_FILE), suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs[CONFIG_ATTRIBUTE] = json.dumps(normalized(models.config_of(model)), sort_keys=True)


def check_weights_match(model, path):
    """Raises a `CheckpointError` unless the weights file `path` was written for exactly `model`'s architecture:
    the configuration recorded in it (where recorded) equals the model's, and it holds as many weights and values
    as the model has (so no stored weight goes unused and no model weight stays uninitialized)."""
    try:
        with h5py.File(path, "r") as f:
            recorded = f.attrs.get(CONFIG_ATTRIBUTE)
            sizes = []
            for name, group in f.items():
                if name != "optimizer":
                    group.visititems(lambda _, item: sizes.append(item.size) if isinstance(item, h5py.Dataset)
                                     else None)
    except OSError:
        return  # not HDF5: load_weights reports it
    wanted = normalized(models.config_of(model))
    if recorded is not None:
        have = json.loads(recorded)
        # Keys of options added since the weights were written are absent there and mean their default.
        diffs = [f"{key}={have[key]!r} (config.json: {wanted[key]!r})"
                 for key in sorted(set(have) & set(wanted)) if have[key] != wanted[key]]
        if diffs:
            raise CheckpointError(
                f"{path} holds the weights of another model than {CONFIG_FILE} describes ({'; '.join(diffs)}): "
                f"was {CONFIG_FILE} edited? Restore it, or train a new model.")
    expected = [int(w.numpy().size) for w in model.weights]
    if len(sizes) != len(expected) or sum(sizes) != sum(expected):
        raise CheckpointError(
            f"{path} holds {len(sizes)} weights ({sum(sizes):,} values) but the model of {CONFIG_FILE} has "
            f"{len(expected)} ({sum(expected):,} values): was {CONFIG_FILE} edited? Restore it, or train a new "
            "model.")


def load_model(model_dir):
    """The model of `model_dir` with its latest weights.

    Raises:
        CheckpointError: the directory, its configuration or its weights are missing or corrupt.
    """
    path = os.path.join(model_dir, WEIGHTS_FILE)
    whole = os.path.join(model_dir, MODEL_FILE)
    if not os.path.exists(path) and os.path.exists(whole):
        load_config(model_dir)  # checks it, as for a training directory
        try:
            return keras.models.load_model(whole, safe_mode=True, compile=False)
        except Exception as e:  # pylint: disable=broad-except  (zip/h5/keras raise many types)
            if "Could not locate class" in str(e):
                found = re.search(r"Could not locate class '([^']+)'", str(e))
                name = found.group(1) if found else "a class"
                raise CheckpointError(
                    f"{whole} names {name!r}, which Keras cannot find: keras.models.load_model finds this project's "
                    "layers and models only after `import imagetransformer`, and only those this version of "
                    "imagetransformer registers; a file written by another version (or naming another package's "
                    "classes) needs that version (or package) installed and imported.") from e
            raise CheckpointError(f"{whole} is corrupt ({type(e).__name__}: {e}).") from e
    model = build_model(model_dir)
    if not os.path.exists(path):
        raise CheckpointError(f"{path} is missing: no trained weights in {model_dir} (has training saved yet?).")
    check_weights_match(model, path)
    try:
        model.load_weights(path)
    except Exception as e:  # h5py/keras raise many types for damaged files
        raise CheckpointError(
            f"{path} is corrupt or does not match config.json ({type(e).__name__}: {e}); restore it from a "
            "backup or train again."
        ) from e
    return model


# The training run that holds a model directory: who it is (pid, host, start), for the message of a second run.
RUN_FILE = ".training_run"


@contextlib.contextmanager
def exclusive(model_dir):
    """Holds `model_dir` for one training run: an exclusive `flock` on the directory itself.

    A second run on the same directory (which would resume from the first run's live backup and overwrite its
    weights) is refused at once with a `CheckpointError` naming the holder. The kernel releases the lock when the
    process ends, however it ends, so a crashed run leaves no stale lock. `RUN_FILE` describes the holder while it
    runs and is removed when it ends, so a run that stops at a check leaves the directory as it was. File systems
    without `flock` on directories run unlocked.
    """
    created = not os.path.isdir(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    fd = os.open(model_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)  # no flock here (some network file systems): go on unlocked
            fd = None
        else:
            os.close(fd)
            try:
                with open(os.path.join(model_dir, RUN_FILE)) as f:
                    holder = f.read().strip()
            except OSError:
                holder = ""
            raise CheckpointError(
                f"--model_dir={model_dir} is in use by another training run ({holder or 'starting'}); wait for it "
                "to end, or choose another --model_dir.") from None
    run_file = os.path.join(model_dir, RUN_FILE)
    try:
        if fd is not None:
            remove_leftover_temporaries(model_dir)  # only a killed run's: nobody else writes here now
            _write_run_file(run_file)  # removed again below: a refused run changes nothing
        yield
    finally:
        if fd is not None:
            if os.path.exists(run_file):
                os.remove(run_file)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        if created and not os.listdir(model_dir):  # a run refused before writing anything leaves no directory
            os.rmdir(model_dir)


def _write_run_file(path):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")


# Training state of a model directory (`python -m imagetransformer.train`).
BACKUP_DIR = "backup"
WORKERS_DIR = "workers"  # non-chief workers' private directories in a multi-worker run
LOGS_DIR = "logs"
# Files of keras.callbacks.BackupAndRestore(double_checkpoint=True) in BACKUP_DIR.
BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_METADATA = "training_metadata.json"
PREVIOUS = ".bkp"


def normalized(value):
    """JSON-comparable form (tuples as lists)."""
    if isinstance(value, (list, tuple)):
        return [normalized(v) for v in value]
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    return value


def check_model_dir(model_dir, model_kwargs, mixed_precision):
    """Returns the existing `config.json` of `model_dir` (None for a new directory) after checking it matches.

    Raises:
        CheckpointError: `config.json` is corrupt, or holds another model configuration (or dtype policy, which
            changes the optimizer's state), or there are checkpoints without a `config.json`.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        leftovers = [name for name in (WEIGHTS_FILE, BACKUP_DIR)
                     if os.path.exists(os.path.join(model_dir, name))]
        if leftovers:
            raise CheckpointError(
                f"--model_dir={model_dir} holds {', '.join(leftovers)} but no {CONFIG_FILE}: not a "
                "complete model directory; choose another --model_dir.")
        return None
    stored = load_config(model_dir)
    wanted = normalized(model_kwargs)
    # The stored configuration as the model it builds: keys written before an option existed take its default.
    have = normalized(models.config_of(build_model(model_dir)))
    diffs = [f"{key}={have.get(key)!r} (flags: {wanted.get(key)!r})"
             for key in sorted(set(wanted) | set(have)) if have.get(key) != wanted.get(key)]
    stored_policy = stored.get("train", {}).get("mixed_precision", "float32")
    if stored_policy != mixed_precision:
        diffs.append(f"mixed_precision={stored_policy!r} (flags: {mixed_precision!r})")
    if diffs:
        raise CheckpointError(
            f"--model_dir={model_dir} holds a different model: its {CONFIG_FILE} has "
            f"{'; '.join(diffs)}. Pass the same model flags to resume it, or choose a new --model_dir.")
    return stored


def _backup_paths(model_dir):
    backup = os.path.join(model_dir, BACKUP_DIR)
    return os.path.join(backup, BACKUP_WEIGHTS), os.path.join(backup, BACKUP_METADATA)


def restore(model, model_dir):
    """Loads the latest training state of `model_dir` into `model` (weights and optimizer, whose optimizer must be
    built); returns the file it came from, or None when there is none.

    The state of an interrupted run (`backup/`, kept by `BackupAndRestore`; its previous copy if the latest was
    cut off while being written) wins over `model.weights.h5` (written at epoch ends).

    Raises:
        CheckpointError: the files exist but none can be loaded.
    """
    weights, metadata = _backup_paths(model_dir)
    candidates = [path for path in (weights, weights + PREVIOUS) if os.path.exists(path)]
    errors = []
    for path in candidates:
        if path == weights:
            try:
                model.load_weights(path)
                return path
            except Exception as e:  # pylint: disable=broad-except  (h5py/keras raise many types for damaged files)
                errors.append(f"{path}: {type(e).__name__}: {e}")
                continue
        # The previous copy: Keras loads only files named *.weights.h5, and BackupAndRestore reads `weights`
        # first, so put a good copy there.
        try:
            with atomic_path(weights, suffix=".weights.h5") as tmp:
                shutil.copyfile(path, tmp)
                model.load_weights(tmp)  # an error here leaves `weights` as it was
        except Exception as e:  # pylint: disable=broad-except
            errors.append(f"{path}: {type(e).__name__}: {e}")
            continue
        if os.path.exists(metadata + PREVIOUS):
            shutil.copyfile(metadata + PREVIOUS, metadata)
        return path
    if candidates:
        raise CheckpointError(
            f"The backup of an interrupted run in {os.path.dirname(weights)} is corrupt ({'; '.join(errors)}); "
            f"delete {os.path.dirname(weights)} to resume from {WEIGHTS_FILE} instead.")
    path = os.path.join(model_dir, WEIGHTS_FILE)
    if not os.path.exists(path):
        return None
    try:
        model.load_weights(path)
    except Exception as e:  # pylint: disable=broad-except
        raise CheckpointError(
            f"{path} is corrupt or does not match {CONFIG_FILE} ({type(e).__name__}: {e}); restore it "
            "or choose a new --model_dir.") from e
    return path


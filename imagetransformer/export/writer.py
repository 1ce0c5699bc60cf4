"""Writing an export: versions in TF Serving's layout, claimed and written atomically.

`export_model(model, export_dir)`
writes

```
<export_dir>/
  <version>/              SavedModel in TF Serving's layout (saved_model.pb, variables/); integer-named
    saved_model.pb
    variables/
  keras/<version>.keras   the same model as a Keras file; TF Serving ignores non-integer entries of the base path
```

The export is written into a hidden temporary directory inside `<export_dir>` and renamed into place, so TF Serving
(which polls the base path) never sees a half-written version and a failed export leaves nothing behind.
"""

import dataclasses
import fcntl
import os
import re
import shutil
import tempfile

from imagetransformer.export.signatures import (
    CACHE_DTYPES,
    DEFAULT_CACHE_DTYPE,
    DEFAULT_MAX_BATCH,
    ExportError,
    export_archive,
    known_rows_for,
)

KERAS_DIR = "keras"
MAX_VERSION = 2**63 - 1  # TF Serving reads version directory names as int64


@dataclasses.dataclass(frozen=True)
class ExportResult:
    version: int
    saved_model_dir: str
    keras_path: str



def existing_versions(export_dir):
    """Versions present in `export_dir`: integer-named directories and `keras/<int>.keras` files."""
    versions = set()
    if os.path.isdir(export_dir):
        versions.update(int(n) for n in os.listdir(export_dir) if n.isdigit())
    keras_dir = os.path.join(export_dir, KERAS_DIR)
    if os.path.isdir(keras_dir):
        for name in os.listdir(keras_dir):
            stem, ext = os.path.splitext(name)
            if ext == ".keras" and stem.isdigit():
                versions.add(int(stem))
    return sorted(versions)


def _paths(export_dir, version):
    return os.path.join(export_dir, str(version)), os.path.join(export_dir, KERAS_DIR, f"{version}.keras")


def export_model(model, export_dir, version=None, overwrite=False, max_batch=DEFAULT_MAX_BATCH,
                 cache_dtype=None, jit_compile=False, parallel_loops=None):
    """Writes the SavedModel `<export_dir>/<version>/` and `<export_dir>/keras/<version>.keras` atomically.

    Args:
        model: an `ImageTransformer` (or another model of this project). An uncompiled model is compiled
            (`compile(optimizer="adam")`, its own likelihood loss) before it is saved, so that
            `keras.models.load_model` of the `.keras` file gives a model ready for `evaluate` and `fit`.
        export_dir: TF Serving's model base path.
        version: positive integer; default: one more than the highest existing version, or 1.
        overwrite: replace an existing version (otherwise an `ExportError`).
        max_batch: the most images one request to a signature may hold.
        cache_dtype: dtype of the generating signatures' key/value caches: `"bfloat16"` or `"float32"`; None:
            `DEFAULT_CACHE_DTYPE` (float32).
        jit_compile: the opt-in XLA export: the generating signatures' decoding loop must be compiled with XLA,
            which TF Serving does on CPU with `--xla_cpu_compilation_enabled=true` (and refuses without it).
        parallel_loops: the generating signatures decode a request's images in up to this many groups side by
            side, one per CPU core of the serving machine that TF Serving lets run ops at once (its inter-op
            threads); None: `default_parallel_loops` of the exporting machine (1 where it has a GPU).

    Returns:
        An `ExportResult`.
    """
    if model.condition.completes_top_rows:
        known_rows_for(model)  # refuse unsupported models before writing anything
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ExportError(f"--export_dir={export_dir} exists and is not a directory.")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ExportError(f"--max_batch={max_batch!r} must be a positive integer.")
    if cache_dtype is None:
        cache_dtype = DEFAULT_CACHE_DTYPE
    if cache_dtype not in CACHE_DTYPES:
        raise ExportError(f"--cache_dtype={cache_dtype!r} must be one of {', '.join(CACHE_DTYPES)}.")
    if parallel_loops is not None and (isinstance(parallel_loops, bool) or not isinstance(parallel_loops, int)
                                       or parallel_loops < 1):
        raise ExportError(f"--parallel_loops={parallel_loops!r} must be a positive integer (the serving machine's "
                          "cores, or 1 for a GPU).")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or not 1 <= version <= MAX_VERSION):
        raise ExportError(f"--version={version!r} must be a positive integer of at most {MAX_VERSION} (TF Serving's "
                          "version directory name, an int64).")
    created = []  # the base path and parents this export creates (removed again if they stay empty)
    directory = export_dir
    while not os.path.isdir(directory) and directory != os.path.dirname(directory):
        created.append(directory)
        directory = os.path.dirname(directory)
    os.makedirs(export_dir, exist_ok=True)
    # Exports to one base path take turns (an exclusive flock on the directory, released by the kernel however
    # the process ends): the next version is chosen and written by one export at a time, so two concurrent
    # exports get two versions, and an existing version is never replaced without `overwrite`.
    fd = os.open(export_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass  # no flock on this file system: unserialized, as before
        return _export_locked(model, export_dir, version, overwrite, max_batch, cache_dtype, bool(jit_compile),
                              parallel_loops)
    finally:
        os.close(fd)  # releases the lock
        for directory in created:  # deepest first
            if os.path.isdir(directory) and not os.listdir(directory):
                os.rmdir(directory)


def _recover_interrupted(export_dir):
    """Finishes what killed exports left in `export_dir` (called under the base path's lock, so no export is
    running): an overwrite cut off between its renames gets the old version back (its SavedModel and .keras file
    were moved aside into the temporary directory), and every `.tmp-export-*` directory is removed."""
    for name in sorted(os.listdir(export_dir)):
        found = re.fullmatch(r"\.tmp-export-(\d+)-.*", name)
        tmp = os.path.join(export_dir, name)
        if not found or not os.path.isdir(tmp) or os.path.islink(tmp):
            continue
        saved_model_dir, keras_path = _paths(export_dir, int(found.group(1)))
        old_saved_model = os.path.join(tmp, "old-" + os.path.basename(saved_model_dir))
        old_keras = os.path.join(tmp, "old-" + os.path.basename(keras_path))
        if os.path.isdir(old_saved_model) and not os.path.lexists(saved_model_dir):  # the new one never arrived
            if os.path.isfile(old_keras):
                os.replace(old_keras, keras_path)
            os.rename(old_saved_model, saved_model_dir)
        shutil.rmtree(tmp, ignore_errors=True)


def _export_locked(model, export_dir, version, overwrite, max_batch, cache_dtype, jit_compile, parallel_loops):
    _recover_interrupted(export_dir)
    if version is None:
        version = max(existing_versions(export_dir), default=0) + 1
        if version > MAX_VERSION:
            raise ExportError(f"{export_dir} already holds version {MAX_VERSION}, the largest TF Serving reads; "
                              "export to a new base path.")
    saved_model_dir, keras_path = _paths(export_dir, version)
    exists = os.path.exists(saved_model_dir) or os.path.exists(keras_path)
    if exists and not overwrite:
        raise ExportError(
            f"version {version} already exists in {export_dir}; pass --overwrite to replace it, or omit --version "
            "to write the next version."
        )

    created = []  # directories this export creates (removed again if it fails and they stay empty)
    directory = os.path.dirname(keras_path)
    while not os.path.isdir(directory) and directory != os.path.dirname(directory):
        created.append(directory)
        directory = os.path.dirname(directory)
    os.makedirs(os.path.dirname(keras_path), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-export-{version}-", dir=export_dir)  # not an integer: TF Serving skips it
    try:
        new_saved_model, new_keras = os.path.join(tmp, "saved_model"), os.path.join(tmp, "model.keras")
        archive = export_archive(model, max_batch=max_batch, cache_dtype=cache_dtype, jit_compile=jit_compile,
                                 parallel_loops=parallel_loops)
        archive.write_out(new_saved_model, verbose=False)
        if not model.compiled:  # so that keras.models.load_model gives a model that `evaluate` and `fit` take
            model.compile(optimizer="adam")  # its own likelihood loss, as `it.from_preset` compiles
        model.save(new_keras)
        # Move an old version aside into tmp (put back on failure), then the new files in; the SavedModel last,
        # so that TF Serving only sees the version once both artifacts are in place.
        done = []  # (destination, aside or None, placed)
        try:
            for destination, new in ((keras_path, new_keras), (saved_model_dir, new_saved_model)):
                aside = None
                if os.path.lexists(destination):
                    aside = os.path.join(tmp, "old-" + os.path.basename(destination))
                    os.rename(destination, aside)
                done.append([destination, aside, False])
                os.rename(new, destination)
                done[-1][2] = True
        except BaseException:
            for destination, aside, placed in reversed(done):
                if placed:
                    _remove(destination)
                if aside is not None:
                    os.rename(aside, destination)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for directory in created:  # deepest first
            if os.path.isdir(directory) and not os.listdir(directory):
                os.rmdir(directory)
    return ExportResult(version, saved_model_dir, keras_path)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)

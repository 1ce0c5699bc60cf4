"""Export a trained model for TensorFlow Serving (SavedModel) and for `keras.models.load_model` (.keras).

```
python -m export.export --model_dir=runs/x --export_dir=exported/imagetransformer [--version=N] [--overwrite]
```
writes

```
<export_dir>/
  <version>/              SavedModel in TF Serving's layout (saved_model.pb, variables/); integer-named
    saved_model.pb
    variables/
  keras/<version>.keras   the same model as a Keras file; TF Serving ignores non-integer entries of the base path
```

Signatures (every input carries the batch dimension, as TF Serving's request batching requires):

- `serving_default`: `{"top_half": uint8 [B, H//2, W, C]}` -> `{"images": uint8 [B, H, W, C]}`, seed 0 and
  temperature 1.0 for every image (so equal top halves give equal completions);
- `complete`: `{"top_half", "seed": int64 [B], "temperature": float32 [B]}` -> `{"images"}`;
- `sample`: `{"seed": int64 [B]}` -> `{"images": uint8 [B, H, W, C]}`, temperature 1.0;
- `log_prob`: `{"images": uint8 [B, H, W, C]}` -> `{"log_prob": float32 [B] (nats), "bits_per_dim": float32 [B]}`.

A class-conditional model (`num_classes`) takes one more input in every signature, `"label": int64 [B]` (the class
of each image, checked to be in `0..num_classes-1`).

A super-resolution model (`SuperResolutionTransformer`, `--task=super_resolution`) has these signatures instead:

- `serving_default`: `{"low_res": uint8 [B, h, w, C]}` -> `{"images": uint8 [B, H, W, C]}`, seed 0, temperature 1.0;
- `super_resolve`: `{"low_res", "seed": int64 [B], "temperature": float32 [B]}` -> `{"images"}` (the same images
  as `it.super_resolve(model, low_res, temperature, seed=seeds)`);
- `log_prob`: `{"images", "low_res"}` -> `{"log_prob", "bits_per_dim"}`.

Image `i` is generated from the stateless seed pair `(seed[i], 0)`: the same pair `it.complete(model, images,
known_rows=H//2, seed=seeds)` uses for a vector of seeds, so an image depends only on its own seed and top half,
never on the rest of the batch. The signatures run the cached decoder (`Decoder(model, jit_compile=False)`): a
prefill of the known rows, then one position per step in a `tf.while_loop`; standard TensorFlow ops only (no
`py_function`, no XLA), so TF Serving runs them as they are. Inputs are checked inside the graph: a wrong shape,
a batch mismatch between inputs or a temperature that is not finite and > 0 fails with a message naming what was
expected (TF Serving returns it as the error).

For `local_2d` attention the known rows H//2 must be a multiple of the query block height (blocks are generated
whole); the export refuses a model where they are not.

The export is written into a hidden temporary directory inside `<export_dir>` and renamed into place, so TF Serving
(which polls the base path) never sees a half-written version and a failed export leaves nothing behind.
"""

import os

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses
import math
import shutil
import sys
import tempfile

SIGNATURES = ("serving_default", "complete", "sample", "log_prob")
SUPER_RESOLUTION_SIGNATURES = ("serving_default", "super_resolve", "log_prob")
KERAS_DIR = "keras"
SERVING_SEED = 0
SERVING_TEMPERATURE = 1.0


class ExportError(ValueError):
    """An export that cannot be written as asked (existing version, unsupported model, bad arguments)."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    version: int
    saved_model_dir: str
    keras_path: str


# ----------------------------------------------------------------------------------------------------------------
# Signatures.
# ----------------------------------------------------------------------------------------------------------------
def signature_names(model):
    """The names of the signatures `model` exports."""
    return SUPER_RESOLUTION_SIGNATURES if _is_super_resolution(model) else SIGNATURES


def _is_super_resolution(model):
    return model.condition_key == "low_res"


def known_rows_for(model):
    """Rows of the top half that the completion signatures take: `H // 2` (checked for local_2d)."""
    height = model.image_shape[0]
    known_rows = height // 2
    if known_rows % model.known_rows_multiple:
        raise ExportError(
            f"cannot export: the top half has {known_rows} rows (H//2 for H={height}), which is not a multiple of "
            f"the local_2d query block height {model.query_shape[0]} (query_shape={tuple(model.query_shape)}); "
            "local_2d generates whole query blocks, so train with a query block height that divides "
            f"{known_rows}."
        )
    return known_rows


def _check_shape(tf, x, expected, message, nonempty=False):
    """An op asserting that `x` has shape `expected` (ints, scalar tensors, or None for any size) and, with
    `nonempty`, at least one entry along its first axis (the decoder cannot generate a batch of 0 images)."""
    shape = tf.shape(x, out_type=tf.int64)
    rank = len(expected)
    padded = tf.concat([shape, tf.fill([rank], tf.constant(-1, tf.int64))], axis=0)[:rank]
    ok = tf.equal(tf.size(shape), rank)
    for i, size in enumerate(expected):
        if size is not None:
            ok = tf.logical_and(ok, tf.equal(padded[i], tf.cast(size, tf.int64)))
    if nonempty:
        ok = tf.logical_and(ok, padded[0] >= 1)
    return tf.debugging.Assert(ok, [message, "got shape", shape], summarize=16)


def _check_per_image(tf, like, seed, temperature, what):
    """Checks of per-image `seed` and `temperature` inputs against the batch of `like` (named `what`)."""
    batch = tf.shape(like, out_type=tf.int64)[0]
    return [
        _check_shape(tf, seed, [batch], f"seed must be [batch] int64: one seed per image of {what}"),
        _check_shape(tf, temperature, [batch], f"temperature must be [batch] float32: one temperature per image of "
                                               f"{what}"),
        tf.debugging.Assert(
            tf.reduce_all(tf.logical_and(tf.math.is_finite(temperature), temperature > 0)),
            ["temperature must be finite and > 0, got", temperature], summarize=16,
        ),
    ]


def _checked(tf, checks, *tensors):
    """`tensors` (None passes through) computed only after `checks` ran."""
    with tf.control_dependencies(checks):
        return [None if t is None else tf.identity(t) for t in tensors]


def super_resolution_functions(model):
    """The signatures of a `SuperResolutionTransformer`: `{name: (fn, input_signature)}`."""
    import tensorflow as tf

    from imagetransformer.generation.sampling import Decoder, per_image_seeds

    height, width, channels = model.image_shape
    low_height, low_width, _ = model.low_res_shape
    order = model.order
    decoder = Decoder(model, jit_compile=False)
    low_res_message = (f"low_res must be [batch, {low_height}, {low_width}, {channels}] uint8 (the {height}x{width} "
                       f"images downsampled by {model.scale}, batch >= 1)")
    images_message = f"images must be [batch, {height}, {width}, {channels}] uint8"

    def check_low_res(low_res):
        return _check_shape(tf, low_res, [None, low_height, low_width, channels], low_res_message, nonempty=True)

    def generate(low_res, seed, temperature):
        """low_res uint8 [B, h, w, C] (checked) -> uint8 [B, H, W, C]; the encoder runs once, in the prefill."""
        batch = tf.shape(low_res)[0]
        low_res = tf.ensure_shape(low_res, [None, *model.low_res_shape])
        tokens = tf.zeros([batch, order.length, order.token_size], tf.int32)
        tokens = decoder.complete_tokens(tokens, 0, per_image_seeds(seed, batch), temperature, low_res)
        return tf.reshape(tf.cast(order.from_sequence(tokens), tf.uint8), [batch, height, width, channels])

    def serving_default(low_res):
        (low_res,) = _checked(tf, [check_low_res(low_res)], low_res)
        batch = tf.shape(low_res)[0]
        seed = tf.fill([batch], tf.constant(SERVING_SEED, tf.int64))
        temperature = tf.fill([batch], tf.constant(SERVING_TEMPERATURE, tf.float32))
        return {"images": generate(low_res, seed, temperature)}

    def super_resolve(low_res, seed, temperature):
        with tf.control_dependencies([check_low_res(low_res)]):
            checks = _check_per_image(tf, low_res, seed, temperature, "low_res")
        low_res, seed, temperature = _checked(tf, checks, low_res, seed, temperature)
        return {"images": generate(low_res, seed, temperature)}

    def log_prob(images, low_res):
        batch = tf.shape(images, out_type=tf.int64)[0]
        checks = [
            _check_shape(tf, images, [None, height, width, channels], images_message),
            _check_shape(tf, low_res, [batch, low_height, low_width, channels],
                         low_res_message.replace("batch >= 1", "the batch of images")),
        ]
        images, low_res = _checked(tf, checks, images, low_res)
        images = tf.ensure_shape(images, [None, height, width, channels])
        low_res = tf.ensure_shape(low_res, [None, *model.low_res_shape])
        log_p = model.log_prob(images, low_res=low_res)
        return {"log_prob": log_p, "bits_per_dim": -log_p / (model.num_dimensions * math.log(2.0))}

    any4 = [None] * 4
    low_res_spec = tf.TensorSpec(any4, tf.uint8, name="low_res")
    return {
        "serving_default": (serving_default, [low_res_spec]),
        "super_resolve": (super_resolve, [
            low_res_spec, tf.TensorSpec([None], tf.int64, name="seed"),
            tf.TensorSpec([None], tf.float32, name="temperature"),
        ]),
        "log_prob": (log_prob, [tf.TensorSpec(any4, tf.uint8, name="images"), low_res_spec]),
    }


def signature_functions(model):
    """`{name: (fn, input_signature)}` for `ExportArchive.add_endpoint`; graph-only, standard TF ops."""
    if _is_super_resolution(model):
        return super_resolution_functions(model)
    import tensorflow as tf

    from imagetransformer.generation.sampling import Decoder, per_image_seeds

    height, width, channels = model.image_shape
    known_rows = known_rows_for(model)
    order = model.order
    known_length = order.known_length(known_rows)
    decoder = Decoder(model, jit_compile=False)
    top_message = (
        f"top_half must be [batch, {known_rows}, {width}, {channels}] uint8 (the top {known_rows} of {height} rows, "
        "batch >= 1)"
    )
    images_message = f"images must be [batch, {height}, {width}, {channels}] uint8"
    num_classes = model.num_classes
    label_specs = [tf.TensorSpec([None], tf.int64, name="label")] if model.conditional else []

    def check_label(label, like):
        """Checks of the `label` input against the batch of `like` (none for an unconditional model)."""
        if label is None:
            return []
        batch = tf.shape(like, out_type=tf.int64)[0]
        return [
            _check_shape(tf, label, [batch], "label must be [batch] int64: one class per image"),
            tf.debugging.Assert(tf.reduce_all(tf.logical_and(label >= 0, label < num_classes)),
                                [f"label must be in 0..{num_classes - 1}, got", label], summarize=16),
        ]

    def checked(checks, *tensors):
        return _checked(tf, checks, *tensors)

    def check_top_half(top_half):
        return _check_shape(tf, top_half, [None, known_rows, width, channels], top_message, nonempty=True)

    def check_per_image(top_half, seed, temperature):
        return _check_per_image(tf, top_half, seed, temperature, "top_half")

    def generate(top_half, seed, temperature, label):
        """top_half uint8 [B, known_rows, W, C] (checked) -> uint8 [B, H, W, C]."""
        batch = tf.shape(top_half)[0]
        bottom = tf.zeros([batch, height - known_rows, width, channels], tf.uint8)
        images = tf.concat([top_half, bottom], axis=1)
        tokens = order.to_sequence(tf.cast(images, tf.int32))
        tokens = decoder.complete_tokens(tokens, known_length, per_image_seeds(seed, batch), temperature, label)
        return tf.reshape(tf.cast(order.from_sequence(tokens), tf.uint8), [batch, height, width, channels])

    def serving_default(top_half, label=None):
        with tf.control_dependencies([check_top_half(top_half)]):
            top_half, label = checked(check_label(label, top_half), top_half, label)
        batch = tf.shape(top_half)[0]
        seed = tf.fill([batch], tf.constant(SERVING_SEED, tf.int64))
        temperature = tf.fill([batch], tf.constant(SERVING_TEMPERATURE, tf.float32))
        return {"images": generate(top_half, seed, temperature, label)}

    def complete(top_half, seed, temperature, label=None):
        with tf.control_dependencies([check_top_half(top_half)]):
            checks = check_per_image(top_half, seed, temperature) + check_label(label, top_half)
        top_half, seed, temperature, label = checked(checks, top_half, seed, temperature, label)
        return {"images": generate(top_half, seed, temperature, label)}

    def sample(seed, label=None):
        check = _check_shape(tf, seed, [None], "seed must be [batch] int64: one seed per image, batch >= 1",
                             nonempty=True)
        with tf.control_dependencies([check]):
            seed, label = checked(check_label(label, seed), seed, label)
        batch = tf.shape(seed)[0]
        tokens = tf.zeros([batch, order.length, order.token_size], tf.int32)
        temperature = tf.fill([batch], tf.constant(1.0, tf.float32))
        tokens = decoder.complete_tokens(tokens, 0, per_image_seeds(seed, batch), temperature, label)
        return {"images": tf.reshape(tf.cast(order.from_sequence(tokens), tf.uint8), [batch, height, width, channels])}

    def log_prob(images, label=None):
        with tf.control_dependencies([_check_shape(tf, images, [None, height, width, channels], images_message)]):
            images, label = checked(check_label(label, images), images, label)
            images = tf.ensure_shape(images, [None, height, width, channels])
        log_p = model.log_prob(images, label)
        return {"log_prob": log_p, "bits_per_dim": -log_p / (model.num_dimensions * math.log(2.0))}

    any4 = [None] * 4
    return {
        "serving_default": (serving_default, [tf.TensorSpec(any4, tf.uint8, name="top_half"), *label_specs]),
        "complete": (complete, [
            tf.TensorSpec(any4, tf.uint8, name="top_half"),
            tf.TensorSpec([None], tf.int64, name="seed"),
            tf.TensorSpec([None], tf.float32, name="temperature"),
            *label_specs,
        ]),
        "sample": (sample, [tf.TensorSpec([None], tf.int64, name="seed"), *label_specs]),
        "log_prob": (log_prob, [tf.TensorSpec(any4, tf.uint8, name="images"), *label_specs]),
    }


def export_archive(model):
    """A `keras.export.ExportArchive` tracking `model` with its signatures (`signature_names`)."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, input_signature) in signature_functions(model).items():
        archive.add_endpoint(name=name, fn=fn, input_signature=input_signature)
    return archive


# ----------------------------------------------------------------------------------------------------------------
# Versions and atomic writes.
# ----------------------------------------------------------------------------------------------------------------
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


def export_model(model, export_dir, version=None, overwrite=False):
    """Writes the SavedModel `<export_dir>/<version>/` and `<export_dir>/keras/<version>.keras` atomically.

    Args:
        model: an `ImageTransformer`.
        export_dir: TF Serving's model base path.
        version: positive integer; default: one more than the highest existing version, or 1.
        overwrite: replace an existing version (otherwise an `ExportError`).

    Returns:
        An `ExportResult`.
    """
    if not _is_super_resolution(model):
        known_rows_for(model)  # refuse unsupported models before writing anything
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ExportError(f"--export_dir={export_dir} exists and is not a directory.")
    if version is None:
        version = max(existing_versions(export_dir), default=0) + 1
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"--version={version!r} must be a positive integer (TF Serving's version directory name).")
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
        export_archive(model).write_out(new_saved_model, verbose=False)
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


# ----------------------------------------------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------------------------------------------
def _define_flags():
    from absl import flags

    flags.DEFINE_string("model_dir", None, "Model directory written by training (config.json + model.weights.h5).")
    flags.DEFINE_string("export_dir", None, "TF Serving model base path; the export goes to <export_dir>/<version>/.")
    flags.DEFINE_integer("version", None, "Version to write; default: one more than the highest existing, or 1.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
    flags.mark_flags_as_required(["model_dir", "export_dir"])
    return flags.FLAGS


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    from absl import flags, logging

    FLAGS = flags.FLAGS
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TF's INFO lines (fingerprints, ...) are noise here
    from imagetransformer.training import checkpoints

    try:
        model = checkpoints.load_model(FLAGS.model_dir)
        result = export_model(model, FLAGS.export_dir, FLAGS.version, FLAGS.overwrite)
    except (checkpoints.CheckpointError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"exported version {result.version}: SavedModel {result.saved_model_dir} "
          f"(signatures: {', '.join(signature_names(model))}), Keras file {result.keras_path}")
    return 0


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)

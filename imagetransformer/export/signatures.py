"""The SavedModel signatures of an exported model: what TF Serving runs.

Signatures (every input carries the batch dimension, as TF Serving's request batching requires):

- `serving_default`: `{"top_half": uint8 [B, H//2, W, C]}` -> `{"images": uint8 [B, H, W, C]}`, seed 0 and
  temperature 1.0 for every image (so equal top halves give equal completions);
- `complete`: `{"top_half", "seed": int64 [B], "temperature": float32 [B]}` -> `{"images"}`;
- `sample`: `{"seed": int64 [B]}` -> `{"images": uint8 [B, H, W, C]}`, temperature 1.0;
- `log_prob`: `{"images": uint8 [B, H, W, C]}` -> `{"log_prob": float32 [B] (nats), "bits_per_dim": float32 [B]}`;
- `serve`: `serving_default` again, under the name of Keras' own exports (`keras.layers.TFSMLayer(path)` calls it).

A class-conditional model (`num_classes`) takes one more input in every signature, `"label": int64 [B]` (the class
of each image, checked to be in `0..num_classes-1`).

A super-resolution model (`SuperResolutionTransformer`, `--task=super_resolution`) has these signatures instead:

- `serving_default`: `{"low_res": uint8 [B, h, w, C]}` -> `{"images": uint8 [B, H, W, C]}`, seed 0, temperature 1.0;
- `super_resolve`: `{"low_res", "seed": int64 [B], "temperature": float32 [B]}` -> `{"images"}` (the same images
  as `it.super_resolve(model, low_res, temperature, seed=seeds, cache_dtype=...)` with the export's cache dtype);
- `log_prob`: `{"images", "low_res"}` -> `{"log_prob", "bits_per_dim"}`.

Image `i` is generated from the stateless seed pair `(seed[i], 0)`: the same pair `it.complete(model, images,
known_rows=H//2, seed=seeds)` uses for a vector of seeds, so an image depends only on its own seed and top half,
never on the rest of the batch. The signatures run the cached decoder (`Decoder(model, jit_compile=False,
cache_dtype=...)`, float32 key/value caches unless `--cache_dtype=bfloat16`): a
prefill of the known rows, then one position per step in a `tf.while_loop`; standard TensorFlow ops only (no
`py_function`, no XLA), so TF Serving runs them as they are. Inputs are checked inside the graph: a wrong shape,
a batch mismatch between inputs or a temperature that is not finite and > 0 fails with a message naming what was
expected (TF Serving returns it as the error).

For `local_2d` attention the known rows H//2 must be a multiple of the query block height (blocks are generated
whole); the export refuses a model where they are not.
"""

import math

import keras
import tensorflow as tf

from imagetransformer.generation.sampling import Decoder, per_image_seeds

# `serve` is `serving_default` under the endpoint name Keras' own exports use, so that
# `keras.layers.TFSMLayer(path)` calls it by default.
SIGNATURES = ("serving_default", "complete", "sample", "log_prob", "serve")
SUPER_RESOLUTION_SIGNATURES = ("serving_default", "super_resolve", "log_prob", "serve")
SERVING_SEED = 0
SERVING_TEMPERATURE = 1.0
# Images per request the signatures accept (`--max_batch`): a request for more fails at once with a message,
# instead of growing the server by gigabytes (log_prob of 2,048 28x28 images needs 11.6 GB).
DEFAULT_MAX_BATCH = 64
# Dtype of the key/value caches the generating signatures decode with (`--cache_dtype`). float32 (the default)
# samples exactly the distribution `log_prob` scores. bfloat16 halves the bytes a step reads from the caches (the
# head, the sampler and `log_prob` stay float32), but on CPU it decodes slower: TensorFlow's graph executor computes
# bfloat16 products with Eigen kernels that convert every element (1.3-1.5x the float32 time in one run on
# 2026-12-06), and XLA emulates bfloat16 arithmetic on CPU. See BENCHMARKS.md ("Cached sampling").
# The same for the graph-executor export and the opt-in XLA export.
CACHE_DTYPES = ("bfloat16", "float32")
DEFAULT_CACHE_DTYPE = "float32"



class ExportError(ValueError):
    """An export that cannot be written as asked (existing version, unsupported model, bad arguments)."""


def signature_names(model):
    """The names of the signatures `model` exports."""
    return SIGNATURES if model.condition.completes_top_rows else SUPER_RESOLUTION_SIGNATURES


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


def _check_shape(x, expected, message, nonempty=False):
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


def _check_batch(x, max_batch):
    """An op asserting that `x` holds at most `max_batch` entries along its first axis."""
    batch = tf.shape(x, out_type=tf.int64)[0]
    return tf.debugging.Assert(
        batch <= max_batch,
        [f"batch must be at most {max_batch} images per request (the export's max_batch); split the request, "
         "got", batch], summarize=4)


def _checked(checks, *tensors):
    """`tensors` (None passes through) computed only after `checks` ran."""
    with tf.control_dependencies(checks):
        return [None if t is None else tf.identity(t) for t in tensors]


class _Inputs:
    """The inputs of one model's signatures, with the in-graph checks that name what was expected.

    Every signature generates from a *source*: the top half (`top_half`, the first `known_rows` rows; the model's
    condition, a class label, comes as a separate `label` input) or, for a super-resolution model, the low-
    resolution image (`low_res`, which is also its condition).
    """

    def __init__(self, model, max_batch=DEFAULT_MAX_BATCH):
        self.model = model
        self.max_batch = int(max_batch)
        self.condition = model.condition
        height, width, channels = model.image_shape
        if self.condition.completes_top_rows:
            self.known_rows = known_rows_for(model)
            self.source_name, self.source_what = "top_half", "top_half"
            self.source_shape = [None, self.known_rows, width, channels]
            self.source_message = (f"top_half must be [batch, {self.known_rows}, {width}, {channels}] uint8 (the top "
                                   f"{self.known_rows} of {height} rows, batch >= 1)")
        else:
            self.known_rows = 0
            low_height, low_width, _ = self.condition.low_res_shape
            self.source_name, self.source_what = "low_res", "low_res"
            self.source_shape = [None, low_height, low_width, channels]
            self.source_message = (f"low_res must be [batch, {low_height}, {low_width}, {channels}] uint8 (the "
                                   f"{height}x{width} images downsampled by {self.condition.scale}, batch >= 1)")
        self.images_message = f"images must be [batch, {height}, {width}, {channels}] uint8"
        self.labels = self.condition.needs_labels  # a separate `label` input

    # Specs.
    def source_spec(self):
        return tf.TensorSpec([None] * 4, tf.uint8, name=self.source_name)

    def label_specs(self):
        return [tf.TensorSpec([None], tf.int64, name="label")] if self.labels else []

    def condition_specs(self):
        """`log_prob`'s inputs beside the images: `label` or `low_res` (none for an unconditional model)."""
        return self.label_specs() if self.condition.completes_top_rows else [self.source_spec()]

    # Checks.
    def check_source(self, source):
        with tf.control_dependencies([_check_shape(source, self.source_shape, self.source_message, nonempty=True)]):
            return _check_batch(source, self.max_batch)

    def check_label(self, label, like):
        """Checks of the `label` input against the batch of `like` (none without labels)."""
        if label is None:
            return []
        batch = tf.shape(like, out_type=tf.int64)[0]
        num_classes = self.condition.num_classes
        return [
            _check_shape(label, [batch], "label must be [batch] int64: one class per image"),
            tf.debugging.Assert(tf.reduce_all(tf.logical_and(label >= 0, label < num_classes)),
                                [f"label must be in 0..{num_classes - 1}, got", label], summarize=16),
        ]

    def check_condition(self, value, images):
        """`log_prob`'s condition checks: a label per image, or a low-resolution image per image."""
        if value is None or self.labels:
            return self.check_label(value, images)
        batch = tf.shape(images, out_type=tf.int64)[0]
        return [_check_shape(value, [batch, *self.source_shape[1:]],
                             self.source_message.replace("batch >= 1", "the batch of images"))]

    def check_per_image(self, like, seed, temperature):
        """Checks of per-image `seed` and `temperature` inputs against the batch of `like`."""
        batch = tf.shape(like, out_type=tf.int64)[0]
        what = self.source_what
        return [
            _check_shape(seed, [batch], f"seed must be [batch] int64: one seed per image of {what}"),
            _check_shape(temperature, [batch],
                         f"temperature must be [batch] float32: one temperature per image of {what}"),
            tf.debugging.Assert(
                tf.reduce_all(tf.logical_and(tf.math.is_finite(temperature), temperature > 0)),
                ["temperature must be finite and > 0, got", temperature], summarize=16,
            ),
        ]


def signature_functions(model, max_batch=DEFAULT_MAX_BATCH, cache_dtype=None,
                        jit_compile=False, parallel_loops=None):
    """`{name: (fn, input_signature)}` for `ExportArchive.add_endpoint`; graph-only, standard TF ops.

    One family for every model (`signature_names`): `serving_default` and `complete` (`super_resolve` for a
    super-resolution model) generate from the source input, `sample` from nothing, `log_prob` scores images; each
    takes the model's condition beside (see `_Inputs`). Every signature refuses more than `max_batch` images.
    The generating signatures keep their key/value caches in `cache_dtype` (see `DEFAULT_CACHE_DTYPE`). With
    `jit_compile` their decoding loop is a nested function that must be compiled with XLA (the opt-in XLA export:
    TF Serving runs it with `--xla_cpu_compilation_enabled=true` on CPU). A request's images are decoded in up to
    `parallel_loops` groups side by side (`Decoder`; None: `default_parallel_loops` of the exporting machine).
    """
    inputs = _Inputs(model, max_batch)
    height, width, channels = model.image_shape
    order = model.order
    cache_dtype = DEFAULT_CACHE_DTYPE if cache_dtype is None else cache_dtype
    decoder = Decoder(model, jit_compile=jit_compile, cache_dtype=cache_dtype, parallel_loops=parallel_loops)

    def to_images(tokens, batch):
        return tf.reshape(tf.cast(order.from_sequence(tokens), tf.uint8), [batch, height, width, channels])

    def generate(source, seed, temperature, label=None):
        """The images generated from the (checked) `source`, one seed and temperature per image."""
        batch = tf.shape(source)[0]
        if inputs.known_rows:  # the top half, completed given `label`
            bottom = tf.zeros([batch, height - inputs.known_rows, width, channels], tf.uint8)
            tokens = order.to_sequence(tf.cast(tf.concat([source, bottom], axis=1), tf.int32))
            condition = label
        else:  # the low-resolution image, which is the condition (the encoder runs once, in the prefill)
            tokens = tf.zeros([batch, order.length, order.token_size], tf.int32)
            condition = tf.ensure_shape(source, [None, *inputs.source_shape[1:]])
        known_length = order.known_length(inputs.known_rows)
        tokens = decoder.complete_tokens(tokens, known_length, per_image_seeds(seed, batch), temperature, condition)
        return to_images(tokens, batch)

    # One traced generation shared by `serving_default`, `serve` and `complete`, which differ only in their checks
    # and defaults: generation is most of each endpoint's graph, and an export traces every endpoint twice (Keras
    # lists the variables it uses, then `tf.saved_model.save` traces it again in its save context).
    per_image = [tf.TensorSpec([None], tf.int64, name="seed"), tf.TensorSpec([None], tf.float32, name="temperature")]
    traced_generate = tf.function(generate, input_signature=[inputs.source_spec(), *per_image, *inputs.label_specs()],
                                  autograph=False)

    def generated(source, seed, temperature, label):
        return {"images": traced_generate(source, seed, temperature, *([] if label is None else [label]))}

    def serving_default(source, label=None):
        with tf.control_dependencies([inputs.check_source(source)]):
            source, label = _checked(inputs.check_label(label, source), source, label)
        batch = tf.shape(source)[0]
        seed = tf.fill([batch], tf.constant(SERVING_SEED, tf.int64))
        temperature = tf.fill([batch], tf.constant(SERVING_TEMPERATURE, tf.float32))
        return generated(source, seed, temperature, label)

    def generate_with_seeds(source, seed, temperature, label=None):
        with tf.control_dependencies([inputs.check_source(source)]):
            checks = inputs.check_per_image(source, seed, temperature) + inputs.check_label(label, source)
        source, seed, temperature, label = _checked(checks, source, seed, temperature, label)
        return generated(source, seed, temperature, label)

    def sample(seed, label=None):
        check = _check_shape(seed, [None], "seed must be [batch] int64: one seed per image, batch >= 1",
                             nonempty=True)
        with tf.control_dependencies([check, _check_batch(seed, inputs.max_batch)]):
            seed, label = _checked(inputs.check_label(label, seed), seed, label)
        batch = tf.shape(seed)[0]
        tokens = tf.zeros([batch, order.length, order.token_size], tf.int32)
        temperature = tf.fill([batch], tf.constant(1.0, tf.float32))
        return {"images": to_images(decoder.complete_tokens(tokens, 0, per_image_seeds(seed, batch), temperature,
                                                            label), batch)}

    def log_prob(images, condition=None):
        with tf.control_dependencies([_check_shape(images, [None, height, width, channels],
                                                   inputs.images_message), _check_batch(images, inputs.max_batch)]):
            images, condition = _checked(inputs.check_condition(condition, images), images, condition)
        images = tf.ensure_shape(images, [None, height, width, channels])
        if condition is None:
            model_inputs = images
        else:
            condition = tf.ensure_shape(condition, model.condition.spec().shape)
            model_inputs = {"images": images, model.condition_key: condition}
        log_p = model.log_prob_from_params(model(model_inputs, training=False), images)
        return {"log_prob": log_p, "bits_per_dim": -log_p / (model.num_dimensions * math.log(2.0))}

    functions = {
        "serving_default": (serving_default, [inputs.source_spec(), *inputs.label_specs()]),
        "complete" if model.condition.completes_top_rows else "super_resolve": (generate_with_seeds, [inputs.source_spec(), *per_image, *inputs.label_specs()]),
        "log_prob": (log_prob, [tf.TensorSpec([None] * 4, tf.uint8, name="images"), *inputs.condition_specs()]),
    }
    functions["serve"] = functions["serving_default"]
    if model.condition.completes_top_rows:
        functions["sample"] = (sample, [tf.TensorSpec([None], tf.int64, name="seed"), *inputs.label_specs()])
    return {name: functions[name] for name in signature_names(model)}


def export_archive(model, max_batch=DEFAULT_MAX_BATCH, cache_dtype=None,
                   jit_compile=False, parallel_loops=None):
    """A `keras.export.ExportArchive` tracking `model` with its signatures (`signature_names`)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, input_signature) in signature_functions(model, max_batch, cache_dtype, jit_compile,
                                                           parallel_loops).items():
        archive.add_endpoint(name=name, fn=fn, input_signature=input_signature)
    return archive

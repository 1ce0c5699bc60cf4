"""Autoregressive sampling: image completion from the top rows, and unconditional samples.

One decoding loop (`Decoder.decode`, a compiled `tf.while_loop`, one position per step) draws every image; a
step function says how a position's head parameters are computed, and a `Sampler` draws its token:

- `CachedStep` (default): per-layer key/value caches; the known rows are prefilled in one teacher-forced pass,
  then each step reads only its attention window from the caches;
- `RerunStep` (`use_cache=False`, and models without caches such as `PixelCNNPlusPlus`): the naive reference,
  which re-runs the whole network for every position.

Both draw from the same distribution and, given the same seeds, the same images. The cached decoder cuts the
batch into groups of images (`parallel_loops`), each prefilled and decoded on its own, the groups side by side
(`Decoder.prefill`, `Decoder.decode_groups`): its steps are bound by one core's memory reads, so each core
decodes its own group.

Randomness is stateless and per image: image `i` draws all its noise up front from its own seed pair, so an
image depends only on its own seed and inputs, not on what else is in the batch (TF Serving merges requests
into batches). A seed given as one int `s` means seed pairs `(s, i)` for image `i`; a vector of seeds `[B]`
means pairs `(seed_i, 0)`.
"""

import functools
import os
import weakref

import keras
import numpy as np
import tensorflow as tf

from imagetransformer import conditioning
from imagetransformer.layers import cache_writes

_DECODERS = weakref.WeakKeyDictionary()


def per_image_seeds(seed, batch_size):
    """`seed` (int or `[B]` ints) -> int64 stateless seed pairs `[B, 2]`."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank == 0:
        return tf.stack([tf.fill([batch_size], seed), tf.range(batch_size, dtype=tf.int64)], axis=1)
    return tf.stack([seed, tf.zeros_like(seed)], axis=1)


def per_image_noise(seeds, length, noise_size):
    """Uniform noise in (0, 1), `[B, length, noise_size]`; row `i` depends only on `seeds[i]`."""
    return tf.map_fn(
        lambda s: tf.random.stateless_uniform([length, noise_size], seed=s, dtype=tf.float32),
        seeds, fn_output_signature=tf.TensorSpec([length, noise_size], tf.float32),
    )


# The eager driver's noise: `map_fn` as a graph loop (~10 us per image, not ~1 ms eagerly). One function for every
# decoder, so that decoders of different settings share its traces: a function per decoder was traced again by
# each, which set off TensorFlow's retracing warning when a program completed with several settings.
_per_image_noise_graph = tf.function(per_image_noise)


class CachedStep:
    """Decoding step of a model with key/value caches (`ImageTransformer`, `SuperResolutionTransformer`).

    The model's decoding protocol, which `supports_cache = True` declares:

    - `hidden_states(prefix, cache_position=n, condition=...)` -> (hidden states, decoder state): the prefill, one
      teacher-forced pass over the first `prefill_length(n)` positions that returns the state a step at `n`
      expects; `init_caches(batch_size, condition)`: the state before position 0;
    - `step(previous_token, state, position)` -> (head parameters `[B, P]`, new state);
    - `decode_period` and `begin_block(state, position)`: once per period (a local query block), the decoder
      moves every layer's attention window.

    `cache_dtype` (e.g. `"bfloat16"`): the dtype of the self-attention key/value caches (`state["layers"]`); None
    keeps the model's compute dtype. The prefill runs in the compute dtype and its caches are cast once.
    """

    def __init__(self, model, cache_dtype=None):
        self.model = model
        self.period = model.decode_period
        self.cache_dtype = cache_dtype  # a tf.DType or None (checked by `Decoder`)

    def init_state(self, tokens, known_length, condition=None):
        """The decoder state holding the first `known_length` positions of `tokens` (and the condition)."""
        if known_length == 0:
            state = self.model.init_caches(tf.shape(tokens)[0], condition=condition)
        else:
            prefix = tokens[:, : self.model.prefill_length(known_length)]  # only the blocks with known positions
            _, state = self.model.hidden_states(prefix, training=False, cache_position=tf.constant(known_length),
                                                condition=condition)
        if self.cache_dtype is not None:
            state = {**state, "layers": tf.nest.map_structure(lambda t: tf.cast(t, self.cache_dtype),
                                                              state["layers"])}
        return state

    def begin_block(self, state, position):
        return self.model.begin_block(state, position)

    def __call__(self, canvas, state, position):
        """Head parameters `[B, P]` of `position` from the token before it (`canvas` `[length, B, token]`)."""
        return self.model.step(tf.gather(canvas, tf.maximum(position - 1, 0)), state, position)


class RerunStep:
    """Decoding step that re-runs the whole network over the canvas: the naive reference decoder, and the
    decoder of models without caches (`PixelCNNPlusPlus`). Its state is the condition alone."""

    def __init__(self, model):
        self.model = model
        self.period = model.order.length  # no windows to move

    def init_state(self, tokens, known_length, condition=None):
        del tokens, known_length
        return {} if condition is None else {"condition": condition}

    def begin_block(self, state, position):
        del position
        return state

    def __call__(self, canvas, state, position):
        params = self.model.sequence_params(tf.transpose(canvas, [1, 0, 2]), training=False,
                                            condition=state.get("condition"))  # [B, length, P]
        return tf.gather(params, position, axis=1), state


class Sampler:
    """Draws each position's token from the head's distribution at a per-image temperature.

    The randomness is given, not drawn: uniforms `[B, noise_size]` per position from the per-image stateless
    noise (`per_image_noise`), so equal seeds give equal images on every path (cached or naive, in process or
    exported).
    """

    def __init__(self, head, temperature):
        self.head = head
        self.temperature = temperature  # float32 [B]

    def __call__(self, params, uniforms):
        return self.head.sample(params, uniforms, self.temperature)


def default_parallel_loops(jit_compile=True):
    """How many decoding loops `Decoder` runs side by side by default: one per CPU core TensorFlow may use at
    once, where the cached loop runs on CPU.

    A cached step reads every weight and the whole key/value window of each image once, a few FLOPs per byte, so
    the loop is bound by how fast one core reads memory; a second core reading its own group of images brings its
    own share of the machine's bandwidth. Concurrent loops need as many inter-op threads (and, for XLA loops, which
    run on the intra-op pool, as many intra-op threads). On a GPU the loops would only queue on one stream: 1.
    """
    if tf.config.list_logical_devices("GPU"):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    pools = [_pool_size(tf.config.threading.get_inter_op_parallelism_threads(), "TF_NUM_INTEROP_THREADS")]
    if jit_compile:
        pools.append(_pool_size(tf.config.threading.get_intra_op_parallelism_threads(), "TF_NUM_INTRAOP_THREADS"))
    return max(1, min([cores] + [threads for threads in pools if threads > 0]))


def _pool_size(configured, variable):
    """A TensorFlow thread pool's size as set by `tf.config.threading` or, failing that, the environment variable
    TensorFlow reads; 0 where neither is set (one thread per core)."""
    if configured:
        return configured
    try:
        return max(0, int(os.environ.get(variable, "0")))
    except ValueError:
        return 0


def group_sizes(batch_size, groups):
    """`batch_size` images cut into `groups` consecutive groups whose sizes differ by at most one (the first
    `batch_size % groups` one larger; some are empty when `batch_size < groups`): a list of `groups` ints for an
    int `batch_size`, of int32 scalars for a tensor (a batch size known only when the graph runs)."""
    if isinstance(batch_size, int):
        return [batch_size // groups + (i < batch_size % groups) for i in range(groups)]
    batch_size = tf.cast(batch_size, tf.int32)
    return tf.unstack(batch_size // groups + tf.cast(tf.range(groups) < batch_size % groups, tf.int32))


class Decoder:
    """One decoding loop for one model, driven by a step function (see `get_decoder`).

    `decode` generates positions one per step inside a `tf.while_loop`; the step function decides how a
    position's head parameters are computed: `CachedStep` (per-layer key/value caches, the default where the
    model supports it) or `RerunStep` (the whole network re-run per position: the naive reference, and models
    without caches). The graph-building methods (`decode`, `complete_tokens`) take and return tensors and use only
    standard TensorFlow ops, so the exported SavedModel signatures call them directly.

    Without XLA the loops write their caches in place (`imagetransformer.layers.cache_writes`): TensorFlow's
    graph executor would otherwise copy every layer's cache on every step.

    The cached decoder cuts the batch into `parallel_loops` groups of images, each prefilled and decoded by its
    own loop; the groups' ops are independent, and TensorFlow runs them at once on its inter-op threads
    (`prefill`, `decode_groups`). A cached step is bound by memory reads, and each core streams its own group's
    caches (and the weights): on a 2-core machine two XLA loops decoded a batch of 4 1.4-1.7x as fast as one loop
    over all 4. Every image is decoded from its own seed, so the grouping never changes which distribution an
    image is drawn from.

    Args:
        model: an `ImageTransformer`, `SuperResolutionTransformer` or `PixelCNNPlusPlus`.
        jit_compile: compile the step loop with XLA (in-process sampling; in an export, the opt-in XLA export
            that TF Serving runs with `--xla_cpu_compilation_enabled`).
        cache_dtype: dtype of the cached keys and values (`CachedStep`); `"bfloat16"` halves the bytes each step
            reads from the caches, with the head and the sampler still in float32. None: the compute dtype.
        parallel_loops: how many groups of images the cached decoder decodes side by side (at most one per
            image); None: `default_parallel_loops(jit_compile)`. The naive decoder (`RerunStep`) is one loop: its
            steps are whole forward passes, which already use every core.
    """

    def __init__(self, model, jit_compile=True, cache_dtype=None, parallel_loops=None):
        self.model = model
        self.jit_compile = bool(jit_compile)
        self.cache_dtype = None if cache_dtype is None else tf.as_dtype(cache_dtype)
        if self.cache_dtype is not None and not self.cache_dtype.is_floating:
            raise ValueError(f"cache_dtype must be a floating dtype such as 'bfloat16', got {cache_dtype!r}.")
        self.order = model.order
        self.head = model.head
        self.parallel_loops = default_parallel_loops(jit_compile) if parallel_loops is None else parallel_loops
        if int(self.parallel_loops) != self.parallel_loops or self.parallel_loops < 1:
            raise ValueError(f"parallel_loops must be a positive integer, got {parallel_loops!r}.")
        self.parallel_loops = int(self.parallel_loops)
        self.cached = CachedStep(model, self.cache_dtype) if model.supports_cache else None
        self.rerun = RerunStep(model)
        steps = [(name, step) for name, step in (("cached", self.cached), ("rerun", self.rerun)) if step is not None]
        # The loop over the images of one group, traced once and called once per group (with XLA, compiled; else
        # unmarked, so that an export holds no XLA attribute).
        self._loop_fns = {
            name: tf.function(functools.partial(self._decode_traced, step), jit_compile=self.jit_compile or None,
                              reduce_retracing=True)
            for name, step in steps}
        # The eager driver's functions, over lists with one entry per group of images.
        self._prefill_fns = {
            name: tf.function(functools.partial(self.prefill, step), reduce_retracing=True) for name, step in steps}
        self._decode_fns = {
            name: tf.function(functools.partial(self.decode_groups, step), reduce_retracing=True)
            for name, step in steps}

    def step_function(self, use_cache=True):
        """The `CachedStep` where the model has caches and `use_cache`, else the `RerunStep`."""
        return self.cached if use_cache and self.cached is not None else self.rerun

    def noise(self, seeds):
        """Uniforms `[B, length, noise_size]` for seed pairs `[B, 2]`."""
        return _per_image_noise_graph(seeds, self.order.length, self.head.noise_size)

    # ----------------------------------------------------------------------------------------------------------
    # The loop (graph).
    # ----------------------------------------------------------------------------------------------------------
    def _decode_traced(self, step, *args):
        with cache_writes.in_place_writes(not self.jit_compile):
            return self.decode(step, *args)

    def decode(self, step, tokens, state, start, stop, noise, temperature, params=None):
        """Generates positions `[start, stop)` one per step in a `tf.while_loop`.

        Args:
            step: a step function (`CachedStep`, `RerunStep`).
            tokens: int32 `[B, length, token]`; positions before `start` are given.
            state: the step function's state, valid for positions before `start`.
            start, stop: int32 scalars.
            noise: float32 `[B, length, noise_size]` uniforms.
            temperature: float32 `[B]`.
            params: optional float32 `[length, B, P]` buffer that receives each step's head parameters.

        Returns:
            `(tokens, state, params)` after the steps.
        """
        state = cache_writes.own_buffers(state)  # in-place writes must not touch the caller's tensors
        canvas = tf.transpose(tokens, [1, 0, 2])  # [length, B, token]: one slot per position
        noise = tf.transpose(noise, [1, 0, 2])  # [length, B, noise_size]
        sampler = Sampler(self.head, temperature)
        if params is None:
            params = tf.zeros([0], tf.float32)
        keep_params = params.shape.rank == 3
        period = step.period

        def one_position(position, canvas, state, params):
            step_params, state = step(canvas, state, position)  # [B, P]
            token = sampler(step_params, tf.gather(noise, position))  # [B, token]
            canvas = tf.tensor_scatter_nd_update(canvas, tf.reshape(position, [1, 1]), token[None])
            if keep_params:
                params = tf.tensor_scatter_nd_update(params, tf.reshape(position, [1, 1]), step_params[None])
            return position + 1, canvas, state, params

        def block(position, canvas, state, params):
            # Windows that jump between query blocks are cut once here; the steps inside only read and write.
            state = tf.cond(tf.equal(position % period, 0), lambda: step.begin_block(state, position),
                            lambda: state)
            end = tf.minimum((position // period + 1) * period, stop)
            return tf.while_loop(lambda p, *_: p < end, one_position, (position, canvas, state, params))

        _, canvas, state, params = tf.while_loop(
            lambda position, *_: position < stop, block, (start, canvas, state, params)
        )
        return tf.transpose(canvas, [1, 0, 2]), state, params

    def prefill(self, step, tokens, known_length, condition):
        """The step function's state for each group of images: `tokens` and `condition` are lists with one
        entry per group (`condition` entries may be None). The groups' prefills are independent ops, which
        TensorFlow runs at once: a teacher-forced pass over a few images splits poorly over the intra-op
        threads, and two half batches side by side took half the time of the whole batch on 2 cores."""
        return [step.init_state(tokens_i, known_length, condition_i)
                for tokens_i, condition_i in zip(tokens, condition)]

    def _loop(self, step):
        """The decoding loop of one group of images: one function, traced once however many groups call it (an
        export traces each generating signature's loop once); with XLA a compiled one, which the SavedModel keeps
        so marked."""
        return self._loop_fns["cached" if step is self.cached else "rerun"]

    def decode_groups(self, step, tokens, states, start, stop, noise, temperature, params):
        """`decode` of each group of images by its own loop; the loops are independent ops, which TensorFlow runs
        at once on its inter-op threads. Every argument but `step`, `start` and `stop` is a list with one entry
        per group (`params` entries may be None). Returns lists `(tokens, states, params)`."""
        loop = self._loop(step)
        outputs = [loop(*args) for args in zip(tokens, states, [start] * len(tokens), [stop] * len(tokens), noise,
                                                temperature, params)]
        tokens, states, params = (list(parts) for parts in zip(*outputs))
        return tokens, states, [p if p is not None and p.shape.rank == 3 else None for p in params]

    def group_count(self, step, batch_size):
        """How many groups of images `step` decodes side by side: up to `parallel_loops` for the cached decoder
        (at most one per image where the batch size is known), one for the naive decoder (its steps are whole
        forward passes, which already use every core)."""
        groups = self.parallel_loops if step is self.cached else 1
        return groups if batch_size is None else max(1, min(groups, batch_size))

    def complete_tokens(self, tokens, known_length, seeds, temperature, condition=None):
        """Graph-only completion (what the exported signatures run): tokens `[B, length, token]` with
        `known_length` given -> all generated, with the cached step where the model has one.

        The batch is cut into groups (`group_count`), each prefilled and decoded on its own, side by side. The
        batch size of an exported signature is unknown when it is traced, so a request may hold fewer images
        than groups: an empty group is skipped.
        """
        noise = per_image_noise(seeds, self.order.length, self.head.noise_size)
        step = self.step_function()
        batch = tokens.shape[0]
        groups = self.group_count(step, batch)
        start, stop = tf.constant(known_length, tf.int32), tf.constant(self.order.length)

        def generate(tokens, noise, temperature, condition):
            state = step.init_state(tokens, known_length, condition)
            return self._loop(step)(tokens, state, start, stop, noise, temperature, None)[0]

        if groups == 1:
            return generate(tokens, noise, temperature, condition)
        sizes = group_sizes(tf.shape(tokens)[0] if batch is None else batch, groups)
        parts = zip(*(split_batch(x, sizes) for x in (tokens, noise, temperature, condition)))
        if batch is not None:
            return tf.concat([generate(*part) for part in parts], 0)
        return tf.concat([tf.cond(size > 0, lambda part=part: generate(*part), lambda part=part: part[0])
                          for size, part in zip(sizes, parts)], 0)

    # ----------------------------------------------------------------------------------------------------------
    # Eager driver.
    # ----------------------------------------------------------------------------------------------------------
    def run(self, tokens, known_length, noise, temperature, use_cache=True, chunk=None, progress=None,
            keep_params=False, condition=None, stop=None):
        """Decodes positions `known_length..stop` (default: all) with compiled loops of `chunk` positions each
        (default: all at once), updating `progress` (a Keras `Progbar`) after each chunk. The batch is cut into
        groups of images once (`group_count`); each group keeps its own state from the prefill to the end.

        Returns:
            `(tokens, params)`: params `[B, length, P]` with `keep_params`, else None.
        """
        step = self.step_function(use_cache)
        name = "cached" if step is self.cached else "rerun"
        stop = self.order.length if stop is None else stop
        batch = int(tokens.shape[0])
        groups = self.group_count(step, batch)
        sizes = group_sizes(batch, groups)
        tokens, noise, temperature, condition = (split_batch(x, sizes) for x in (tokens, noise, temperature,
                                                                                   condition))
        states = self._prefill_fns[name](tokens, known_length, condition)
        params = [None] * groups
        if keep_params:
            params = [tf.zeros([self.order.length, size, self.head.params_size], tf.float32) for size in sizes]
        chunk = chunk or self.order.length
        position = known_length
        while position < stop:
            end = min(position + chunk, stop)
            tokens, states, params = self._decode_fns[name](
                tokens, states, tf.constant(position), tf.constant(end), noise, temperature, params
            )
            position = end
            if progress is not None:
                progress.update(position - known_length)
        return tf.concat(tokens, 0), (tf.transpose(tf.concat(params, 1), [1, 0, 2]) if keep_params else None)


def split_batch(x, sizes):
    """`x` `[B, ...]` cut along its first axis into groups of `sizes` images (a list of ints or int32 scalars); a
    list of None where `x` is None."""
    if x is None:
        return [None] * len(sizes)
    if all(isinstance(size, int) for size in sizes):
        return tf.split(x, sizes, axis=0)
    return tf.split(x, tf.stack(sizes), num=len(sizes), axis=0)


def get_decoder(model, jit_compile=True, cache_dtype=None, parallel_loops=None):
    """The (cached) `Decoder` of `model`; compiled functions are reused across calls."""
    if parallel_loops is None:
        parallel_loops = default_parallel_loops(jit_compile)
    key = (bool(jit_compile), None if cache_dtype is None else tf.as_dtype(cache_dtype).name, parallel_loops)
    decoders = _DECODERS.setdefault(model, {})
    if key not in decoders:
        decoders[key] = Decoder(model, jit_compile=jit_compile, cache_dtype=cache_dtype,
                                parallel_loops=parallel_loops)
    return decoders[key]


def default_known_rows(model):
    """Half the image height, rounded down to whole query blocks for local_2d attention."""
    rows = model.image_shape[0] // 2
    return rows - rows % model.known_rows_multiple


def _check_temperature(temperature, batch_size):
    temperature = np.broadcast_to(np.asarray(temperature, np.float32), [batch_size])
    if not np.all(np.isfinite(temperature)) or np.any(temperature <= 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature.tolist()}.")
    return tf.constant(temperature)


def complete(
    model, images, known_rows, temperature=1.0, seed=0, use_cache=True, progress=False, return_params=False,
    jit_compile=True, labels=None, low_res=None, cache_dtype=None, parallel_loops=None,
):
    """Completes images from their first `known_rows` rows.

    Args:
        model: an `ImageTransformer` or `PixelCNNPlusPlus`.
        images: integer `[B, H, W, C]` with values 0..255; only rows `< known_rows` are read.
        known_rows: rows given; for local_2d attention a multiple of the query block height.
        temperature: float or `[B]` floats > 0; 1.0 samples the model's distribution exactly.
        seed: int, or `[B]` ints (one per image); equal seeds give equal images.
        use_cache: the cached decoder (True) or the naive reference that re-runs the network per position. Models
            without caches (`PixelCNNPlusPlus`) always decode naively.
        progress: show a Keras progress bar (decoding in chunks of rows).
        return_params: also return the head parameters of every step in image layout (as `model(images)`
            returns them; the given rows hold the prefill's parameters only for the cached decoder's steps).
        jit_compile: compile the cached step loop with XLA.
        labels: int `[B]` in `0..num_classes-1`: the class of each image, for (and only for) a class-conditional
            model (a scalar: the same class for every image).
        low_res: uint8 `[B, h, w, C]`: the low-resolution version of each image, for (and only for) a
            `SuperResolutionTransformer` (see `super_resolve`).
        cache_dtype: dtype of the cached decoder's key/value caches, e.g. `"bfloat16"` (half the bytes read per
            step; the head and the sampler stay float32, so the samples follow the model up to the rounding of the
            cached keys and values). None: the model's compute dtype, exactly the model's distribution.
        parallel_loops: groups of images the cached decoder decodes side by side (see `Decoder`); None: one per
            CPU core TensorFlow may use at once (`default_parallel_loops`), 1 on a GPU.

    Returns:
        uint8 `[B, H, W, C]` (and the parameters if `return_params`).
    """
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_integer:
        raise TypeError(f"images must be an integer tensor with values 0..255, got dtype {images.dtype.name}.")
    if images.shape.rank != 4 or tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(
            f"images must have shape [batch, {', '.join(map(str, model.image_shape))}] (the model's image_shape), "
            f"got {list(images.shape)}."
        )
    batch_size = int(images.shape[0])
    if batch_size < 1:
        raise ValueError("images must hold at least one image, got a batch of 0.")
    if labels is not None:
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank == 0:  # one class for every image
            labels = tf.fill([batch_size], labels)
    inputs = {"images": images, **({"labels": labels} if labels is not None else {}),
              **({"low_res": low_res} if low_res is not None else {})}
    _, condition = model.split_inputs(inputs)  # refuses a condition the model does not take, or a missing one
    known_length = model.order.known_length(known_rows)
    temperature = _check_temperature(temperature, batch_size)
    seeds = per_image_seeds(seed, batch_size)
    order = model.order
    tokens = order.to_sequence(tf.cast(images, tf.int32))
    # Nothing past the known rows is read: clear it so a result never depends on it.
    keep = tf.cast(tf.range(order.length) < known_length, tf.int32)[None, :, None]
    tokens *= keep
    decoder = get_decoder(model, jit_compile=jit_compile, cache_dtype=cache_dtype, parallel_loops=parallel_loops)
    noise = decoder.noise(seeds)
    to_generate = order.length - known_length
    bar = keras.utils.Progbar(to_generate, unit_name="position") if progress and to_generate else None
    params = None
    if return_params and not model.supports_cache:
        raise ValueError(f"return_params needs the cached decoder, which {type(model).__name__} does not have.")
    if return_params and not use_cache:
        raise ValueError("return_params needs the cached decoder (use_cache=True).")
    chunk = order.grid_shape[1] if progress else None  # one grid row per chunk
    tokens, params = decoder.run(tokens, known_length, noise, temperature, use_cache=use_cache, chunk=chunk,
                                 progress=bar, keep_params=return_params, condition=condition)
    result = tf.cast(order.to_images(tokens), tf.uint8)
    if return_params:
        return result, order.from_sequence(params)
    return result


def sample(model, batch_size, temperature=1.0, seed=0, use_cache=True, progress=False, jit_compile=True,
           labels=None, cache_dtype=None, parallel_loops=None):
    """Samples from the model (of the classes `labels` for a class-conditional model): uint8
    `[batch_size, H, W, C]` (see `complete` for the arguments)."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    images = tf.zeros([int(batch_size), *model.image_shape], tf.uint8)
    return complete(
        model, images, 0, temperature=temperature, seed=seed, use_cache=use_cache, progress=progress,
        jit_compile=jit_compile, labels=labels, cache_dtype=cache_dtype, parallel_loops=parallel_loops,
    )


def super_resolve(model, low_res, temperature=1.0, seed=0, use_cache=True, progress=False, jit_compile=True,
                  cache_dtype=None, parallel_loops=None):
    """Samples full-resolution images given their low-resolution versions, with a `SuperResolutionTransformer`.

    The encoder runs once per image (in the prefill); then the cached decoder generates every position,
    cross-attending to the encoder's output.

    Args:
        model: a `SuperResolutionTransformer`.
        low_res: integer `[B, h, w, C]` (values 0..255), `h, w = H / scale, W / scale`.
        temperature, seed, use_cache, progress, jit_compile, cache_dtype, parallel_loops: as for `complete`.

    Returns:
        uint8 `[B, H, W, C]`.
    """
    if not isinstance(model.condition, conditioning.LowResImage):
        raise ValueError(f"super_resolve needs a SuperResolutionTransformer (train with --task=super_resolution), "
                         f"got a {type(model).__name__}.")
    low_res = tf.convert_to_tensor(low_res)
    batch_size = int(low_res.shape[0]) if low_res.shape.rank else 0
    if low_res.shape.rank != 4 or batch_size < 1:
        raise ValueError(f"low_res must be [batch >= 1, {', '.join(map(str, model.low_res_shape))}], got "
                         f"{list(low_res.shape)}.")
    images = tf.zeros([batch_size, *model.image_shape], tf.uint8)
    return complete(model, images, 0, temperature=temperature, seed=seed, use_cache=use_cache, progress=progress,
                    jit_compile=jit_compile, low_res=low_res, cache_dtype=cache_dtype, parallel_loops=parallel_loops)

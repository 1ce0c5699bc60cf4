"""Autoregressive sampling: image completion from the top rows, and unconditional samples.

Two decoders draw from the same distribution and, given the same seeds, the same images:

- the **cached** decoder (default): per-layer key/value caches; the known rows are prefilled in one
  teacher-forced pass; then one position per step inside a compiled `tf.while_loop`, each step reading only
  its attention window from the caches;
- the **naive** reference (`use_cache=False`): re-runs the whole network for every position.

Randomness is stateless and per image: image `i` draws all its noise up front from its own seed pair, so an
image depends only on its own seed and inputs, not on what else is in the batch (TF Serving merges requests
into batches). A seed given as one int `s` means seed pairs `(s, i)` for image `i`; a vector of seeds `[B]`
means pairs `(seed_i, 0)`.
"""

import weakref

import keras
import numpy as np
import tensorflow as tf

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


class Decoder:
    """Compiled cached and naive decoding for one model (see `get_decoder`).

    The graph-building methods (`prefill`, `decode`, `complete_tokens`) take and return tensors and use only
    standard TensorFlow ops, so the exported SavedModel signatures call them directly.

    Args:
        model: an `ImageTransformer` (or a model without caches, such as `PixelCNNPlusPlus`: then only the
            naive decoder and `decode_uncached` apply).
        jit_compile: compile the step loop with XLA (in-process sampling only; keep it out of exports).
    """

    def __init__(self, model, jit_compile=True):
        self.model = model
        self.order = model.order
        self.head = model.head
        self._decode_fn = tf.function(self.decode, jit_compile=jit_compile, reduce_retracing=True)
        self._prefill_fn = tf.function(self.prefill, reduce_retracing=True)
        self._forward_fn = tf.function(
            lambda tokens, condition=None: model.sequence_params(tokens, training=False, condition=condition))
        self._noise_fn = tf.function(per_image_noise)  # map_fn as a graph loop: ~10 us per image, not ~1 ms

    def noise(self, seeds):
        """Uniforms `[B, length, noise_size]` for seed pairs `[B, 2]`."""
        return self._noise_fn(seeds, self.order.length, self.head.noise_size)

    # ----------------------------------------------------------------------------------------------------------
    # Graph building blocks.
    # ----------------------------------------------------------------------------------------------------------
    def prefill(self, tokens, known_length, condition=None):
        """The decoder state (per-layer caches) holding the keys/values of the first `known_length` positions of
        `tokens`; `condition`: the labels `[B]` of a class-conditional model, the low-resolution images of a
        super-resolution model (encoded here, once)."""
        if known_length == 0:
            return self.model.init_caches(tf.shape(tokens)[0], condition=condition)
        prefix = tokens[:, : self.model.prefill_length(known_length)]  # only the blocks that hold known positions
        _, caches = self.model.hidden_states(prefix, training=False, cache_position=tf.constant(known_length),
                                             condition=condition)
        return caches

    def decode(self, tokens, caches, start, stop, noise, temperature, params=None):
        """Generates positions `[start, stop)` one per step in a `tf.while_loop`.

        Args:
            tokens: int32 `[B, length, token]`; positions before `start` are given.
            caches: the decoder state (per-layer caches) valid for positions before `start`.
            start, stop: int32 scalars.
            noise: float32 `[B, length, noise_size]` uniforms.
            temperature: float32 `[B]`.
            params: optional float32 `[length, B, P]` buffer that receives each step's head parameters.

        Returns:
            `(tokens, caches, params)` after the steps.
        """
        canvas = tf.transpose(tokens, [1, 0, 2])  # [length, B, token]: one slot per position
        noise = tf.transpose(noise, [1, 0, 2])  # [length, B, noise_size]
        if params is None:
            params = tf.zeros([0], tf.float32)
        keep_params = params.shape.rank == 3
        period = self.model.decode_period

        def step(position, canvas, caches, params):
            previous = tf.gather(canvas, tf.maximum(position - 1, 0))  # [B, token]
            step_params, caches = self.model.step(previous, caches, position)  # [B, P]
            token = self.head.sample(step_params, tf.gather(noise, position), temperature)  # [B, token]
            canvas = tf.tensor_scatter_nd_update(canvas, tf.reshape(position, [1, 1]), token[None])
            if keep_params:
                params = tf.tensor_scatter_nd_update(params, tf.reshape(position, [1, 1]), step_params[None])
            return position + 1, canvas, caches, params

        def block(position, canvas, caches, params):
            # Windows that jump between query blocks are cut once here; the steps inside only read and write.
            caches = tf.cond(tf.equal(position % period, 0),
                             lambda: self.model.begin_block(caches, position), lambda: caches)
            end = tf.minimum((position // period + 1) * period, stop)
            return tf.while_loop(lambda p, *_: p < end, step, (position, canvas, caches, params))

        _, canvas, caches, params = tf.while_loop(
            lambda position, *_: position < stop, block, (start, canvas, caches, params)
        )
        return tf.transpose(canvas, [1, 0, 2]), caches, params

    def decode_uncached(self, tokens, start, stop, noise, temperature, condition=None):
        """Generates positions `[start, stop)` in a `tf.while_loop`, re-running the whole network per position.

        The decoder of models without caches (PixelCNN++); same arguments as `decode`, returns the tokens.
        """
        canvas = tf.transpose(tokens, [1, 0, 2])  # [length, B, token]
        noise = tf.transpose(noise, [1, 0, 2])  # [length, B, noise_size]

        def step(position, canvas):
            params = self.model.sequence_params(tf.transpose(canvas, [1, 0, 2]), training=False,
                                                condition=condition)  # [B, length, P]
            params = tf.gather(params, position, axis=1)  # [B, P]
            token = self.head.sample(params, tf.gather(noise, position), temperature)  # [B, token]
            return position + 1, tf.tensor_scatter_nd_update(canvas, tf.reshape(position, [1, 1]), token[None])

        _, canvas = tf.while_loop(lambda position, _: position < stop, step, (start, canvas))
        return tf.transpose(canvas, [1, 0, 2])

    def complete_tokens(self, tokens, known_length, seeds, temperature, condition=None):
        """Graph-only completion: tokens `[B, length, token]` with `known_length` given -> all generated."""
        noise = per_image_noise(seeds, self.order.length, self.head.noise_size)
        if not self.model.supports_cache:
            return self.decode_uncached(tokens, tf.constant(known_length, tf.int32), tf.constant(self.order.length),
                                        noise, temperature, condition)
        caches = self.prefill(tokens, known_length, condition)
        start = tf.constant(known_length, tf.int32)
        tokens, _, _ = self.decode(tokens, caches, start, tf.constant(self.order.length), noise, temperature)
        return tokens

    # ----------------------------------------------------------------------------------------------------------
    # Eager drivers.
    # ----------------------------------------------------------------------------------------------------------
    def run_cached(self, tokens, known_length, noise, temperature, chunk=None, progress=None, keep_params=False,
                   condition=None):
        """Cached decoding, optionally in chunks of `chunk` positions (for a progress bar)."""
        length = self.order.length
        caches = self._prefill_fn(tokens, known_length, condition)
        params = None
        if keep_params:
            params = tf.zeros([length, tf.shape(tokens)[0], self.head.params_size], tf.float32)
        chunk = chunk or length
        position = known_length
        while position < length:
            stop = min(position + chunk, length)
            tokens, caches, params = self._decode_fn(
                tokens, caches, tf.constant(position), tf.constant(stop), noise, temperature, params
            )
            position = stop
            if progress is not None:
                progress.update(position - known_length)
        return tokens, (tf.transpose(params, [1, 0, 2]) if keep_params else None)

    def run_naive(self, tokens, known_length, noise, temperature, progress=None, stop=None, condition=None):
        """Reference decoding: one full forward pass per generated position (up to `stop`, default all)."""
        for position in range(known_length, stop or self.order.length):
            params = self._forward_fn(tokens, condition)[:, position]  # [B, P]
            token = self.head.sample(params, noise[:, position], temperature)
            tokens = tf.concat([tokens[:, :position], token[:, None], tokens[:, position + 1 :]], axis=1)
            if progress is not None:
                progress.update(position + 1 - known_length)
        return tokens


def get_decoder(model, jit_compile=True):
    """The (cached) `Decoder` of `model`; compiled functions are reused across calls."""
    key = (jit_compile,)
    decoders = _DECODERS.setdefault(model, {})
    if key not in decoders:
        decoders[key] = Decoder(model, jit_compile=jit_compile)
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
    jit_compile=True, labels=None, low_res=None,
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
    decoder = get_decoder(model, jit_compile=jit_compile)
    noise = decoder.noise(seeds)
    to_generate = order.length - known_length
    bar = keras.utils.Progbar(to_generate, unit_name="position") if progress and to_generate else None
    params = None
    if return_params and not model.supports_cache:
        raise ValueError(f"return_params needs the cached decoder, which {type(model).__name__} does not have.")
    if use_cache and model.supports_cache:
        chunk = order.grid_shape[1] if progress else None  # one grid row per chunk
        tokens, params = decoder.run_cached(tokens, known_length, noise, temperature, chunk, bar, return_params,
                                            condition=condition)
    else:
        if return_params:
            raise ValueError("return_params needs the cached decoder (use_cache=True).")
        tokens = decoder.run_naive(tokens, known_length, noise, temperature, bar, condition=condition)
    result = tf.cast(order.to_images(tokens), tf.uint8)
    if return_params:
        return result, order.from_sequence(params)
    return result


def sample(model, batch_size, temperature=1.0, seed=0, use_cache=True, progress=False, jit_compile=True,
           labels=None):
    """Samples from the model (of the classes `labels` for a class-conditional model): uint8
    `[batch_size, H, W, C]` (see `complete` for the arguments)."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    images = tf.zeros([int(batch_size), *model.image_shape], tf.uint8)
    return complete(
        model, images, 0, temperature=temperature, seed=seed, use_cache=use_cache, progress=progress,
        jit_compile=jit_compile, labels=labels,
    )


def super_resolve(model, low_res, temperature=1.0, seed=0, use_cache=True, progress=False, jit_compile=True):
    """Samples full-resolution images given their low-resolution versions, with a `SuperResolutionTransformer`.

    The encoder runs once per image (in the prefill); then the cached decoder generates every position,
    cross-attending to the encoder's output.

    Args:
        model: a `SuperResolutionTransformer`.
        low_res: integer `[B, h, w, C]` (values 0..255), `h, w = H / scale, W / scale`.
        temperature, seed, use_cache, progress, jit_compile: as for `complete`.

    Returns:
        uint8 `[B, H, W, C]`.
    """
    if model.condition_key != "low_res":
        raise ValueError(f"super_resolve needs a SuperResolutionTransformer (train with --task=super_resolution), "
                         f"got a {type(model).__name__}.")
    low_res = tf.convert_to_tensor(low_res)
    batch_size = int(low_res.shape[0]) if low_res.shape.rank else 0
    if low_res.shape.rank != 4 or batch_size < 1:
        raise ValueError(f"low_res must be [batch >= 1, {', '.join(map(str, model.low_res_shape))}], got "
                         f"{list(low_res.shape)}.")
    images = tf.zeros([batch_size, *model.image_shape], tf.uint8)
    return complete(model, images, 0, temperature=temperature, seed=seed, use_cache=use_cache, progress=progress,
                    jit_compile=jit_compile, low_res=low_res)

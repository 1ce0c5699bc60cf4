"""The Image Transformer (Parmar et al. 2018) as a Keras model.

```
images [B, H, W, C] uint8
  -> tokens in generation order                      [B, length, token]   (imagetransformer.ordering)
  -> PixelEmbedding (values shifted right + position) [B, length, hidden]
  -> num_layers x DecoderBlock (masked attention + FFN)
  -> LayerNormalization
  -> head parameters (float32)                        [B, length, P]
  -> image layout: dmol [B, H, W, P], categorical [B, H, W, C, 256]
```
`model(images)` returns the head parameters; `log_prob` / `bits_per_dim` turn them into exact likelihoods with
tfp distributions. `compile(optimizer=...)` then `fit(images)` minimizes the negative log-likelihood (nats per
dimension) with no targets, and reports bits/dim.
"""

import math

import keras
import tensorflow as tf

from imagetransformer import conditioning
from imagetransformer.models.base import AutoregressiveImageModel
from imagetransformer.heads import CategoricalHead, DiscretizedLogisticMixtureHead
from imagetransformer.layers import (
    CausalConvStem,
    ClassConditioner,
    DecoderBlock,
    GlobalSelfAttention,
    LocalSelfAttention1D,
    LocalSelfAttention2D,
    PixelEmbedding,
)
from imagetransformer.layers.embedding import STARTS, VALUE_EMBEDDINGS
from imagetransformer.layers.feed_forward import NORMS
from imagetransformer.ordering import DISTRIBUTIONS, PixelOrder

ATTENTIONS = ("local_1d", "local_2d", "global")
# Where a saved model keeps its conditioner's weights, and the top-level layers that held them before.
_CONDITIONER = "conditioner"
_LEGACY_CONDITIONER_LAYERS = ("class_embedding", "low_res_embedding", "encoder_blocks", "encoder_norm")


def _pair(value, name):
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"{name}={value!r} must be a pair of integers (rows, cols).")
    return pair


@keras.saving.register_keras_serializable(package="imagetransformer")
class ImageTransformer(AutoregressiveImageModel):
    """Autoregressive image model with local 1D/2D or global masked self-attention.

    Args:
        image_shape: `(H, W, C)` with C in {1, 3}.
        attention: `"local_1d"`, `"local_2d"` or `"global"`.
        num_layers: decoder blocks.
        hidden_size: model width; a multiple of `num_heads`.
        num_heads: attention heads.
        filter_size: feed-forward hidden units.
        dropout: dropout rate of the residual branches.
        block_length: local_1d query block length in positions; must divide the number of positions.
        memory_length: local_1d positions before each block that it also attends to.
        query_shape: local_2d query block `(rows, cols)` in grid positions; must divide the grid.
        memory_flange: local_2d memory `(rows above, cols on each side)` of a query block.
        distribution: `"dmol"` (one position per pixel) or `"categorical"` (one position per sub-pixel; the
            grid is `H x W*C`, which is what `block_length`, `query_shape` and `memory_flange` count in).
        num_mixtures: dmol mixture components.
        num_classes: None (unconditional), or the number of classes of a class-conditional model: a learned
            class embedding (`ClassConditioner`) is added to every position, and inputs are `{"images": ...,
            "labels": int [B]}`.
        conditioner: None, or the layer the decoder is conditioned through (`imagetransformer.layers`:
            `ClassConditioner`, `LowResEncoder`; see `ClassConditioner` for the protocol): its `condition` says
            what the model takes beside the images, and with `cross_attention` every decoder block also attends to
            its memory. `SuperResolutionTransformer` is this model with a `LowResEncoder`. Not with `num_classes`.
        initializer_gain: variance scale of the attention and feed-forward kernels,
            `VarianceScaling(gain, "fan_avg", "uniform")` (1.0 is Keras' `glorot_uniform`; tensor2tensor's Image
            Transformer uses 0.2).
        head_initializer_gain: the same for the output head's projection (default: `initializer_gain`). Below 1 it
            starts the DMoL component means inside the pixel range.
        value_embedding: `"table"` (256 learned vectors per channel) or `"projection"` (`relu` of a linear map of
            the values scaled to [-1, 1]); see `PixelEmbedding`.
        start: the input of position 0: `"learned"` or `"zeros"`.
        conv_stem_layers: masked convolutions over earlier pixels added to the embedding (`CausalConvStem`; 0:
            none). Needs raster order: local_1d or global attention.
        conv_stem_kernel: `(rows above, cols on each side)` of each stem convolution.
        norm: `"pre"` (normalize each branch's input, and a final layer norm) or `"post"` (normalize after each
            residual sum, as the paper and tensor2tensor's `image_transformer_base`); see `DecoderBlock`.
        max_log_scale: upper clip of the DMoL log-scales in [-1, 1] units (None: no upper clip).
        **kwargs: forwarded to `keras.Model` (`name`, `dtype`, ...).

    Example:
    >>> model = ImageTransformer(image_shape=(8, 8, 1), attention="local_1d", num_layers=1, hidden_size=16,
    ...                          num_heads=2, filter_size=32, block_length=16, memory_length=16, num_mixtures=2)
    >>> images = tf.zeros([2, 8, 8, 1], tf.uint8)
    >>> model.log_prob(images).shape
    TensorShape([2])
    """

    supports_cache = True

    def __init__(
        self,
        image_shape=(32, 32, 3),
        attention="local_1d",
        num_layers=6,
        hidden_size=256,
        num_heads=8,
        filter_size=512,
        dropout=0.1,
        block_length=256,
        memory_length=256,
        query_shape=(8, 16),
        memory_flange=(8, 16),
        distribution="dmol",
        num_mixtures=10,
        num_classes=None,
        conditioner=None,
        initializer_gain=1.0,
        head_initializer_gain=None,
        value_embedding="table",
        start="learned",
        conv_stem_layers=0,
        conv_stem_kernel=(2, 2),
        norm="pre",
        max_log_scale=3.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_shape = self._validate_image_shape(image_shape)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention={attention!r} is not supported; choose one of {', '.join(ATTENTIONS)}.")
        if distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"distribution={distribution!r} is not supported; choose one of {', '.join(DISTRIBUTIONS)}."
            )
        for name, value, minimum in (
            ("num_layers", num_layers, 1), ("hidden_size", hidden_size, 1), ("num_heads", num_heads, 1),
            ("filter_size", filter_size, 1), ("block_length", block_length, 1),
            ("memory_length", memory_length, 0), ("num_mixtures", num_mixtures, 1),
        ):
            if int(value) != value or value < minimum:
                raise ValueError(f"{name}={value!r} must be an integer >= {minimum}.")
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size={hidden_size} must be a multiple of num_heads={num_heads} (each head gets "
                "hidden_size / num_heads channels)."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r} must be in [0, 1).")
        self.attention_type = attention
        self.num_layers = int(num_layers)
        self.hidden_size = int(hidden_size)
        self.num_heads = int(num_heads)
        self.filter_size = int(filter_size)
        self.dropout = float(dropout)
        self.block_length = int(block_length)
        self.memory_length = int(memory_length)
        self.query_shape = _pair(query_shape, "query_shape")
        self.memory_flange = _pair(memory_flange, "memory_flange")
        if min(self.query_shape) < 1 or min(self.memory_flange) < 0:
            raise ValueError(
                f"query_shape={self.query_shape} must be positive and memory_flange={self.memory_flange} "
                "non-negative."
            )
        self.distribution = distribution
        self.num_mixtures = int(num_mixtures)
        if isinstance(conditioner, dict):  # from get_config
            conditioner = keras.saving.deserialize_keras_object(conditioner)
        if num_classes is not None:
            if conditioner is not None:
                raise ValueError("Pass num_classes or a conditioner, not both: num_classes=N is "
                                 "conditioner=ClassConditioner(N, hidden_size).")
            conditioner = ClassConditioner(num_classes, self.hidden_size, name="conditioner")
        if conditioner is not None and getattr(conditioner, "hidden_size", self.hidden_size) != self.hidden_size:
            raise ValueError(f"The conditioner's hidden_size={conditioner.hidden_size} must equal the decoder's "
                             f"hidden_size={self.hidden_size}.")
        self.conditioner = conditioner
        self.num_classes = conditioner.num_classes if isinstance(conditioner, ClassConditioner) else None
        self.condition = conditioning.Unconditional() if conditioner is None else conditioner.condition
        for name, value in (("initializer_gain", initializer_gain), ("head_initializer_gain", head_initializer_gain)):
            if value is not None and not float(value) > 0:
                raise ValueError(f"{name}={value!r} must be positive.")
        self.initializer_gain = float(initializer_gain)
        self.head_initializer_gain = None if head_initializer_gain is None else float(head_initializer_gain)
        for name, value, choices in (("value_embedding", value_embedding, VALUE_EMBEDDINGS), ("start", start, STARTS),
                                     ("norm", norm, NORMS)):
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(choices)}.")
        self.value_embedding = value_embedding
        self.start = start
        self.norm = norm
        if int(conv_stem_layers) != conv_stem_layers or conv_stem_layers < 0:
            raise ValueError(f"conv_stem_layers={conv_stem_layers!r} must be an integer >= 0 (0: no stem).")
        self.conv_stem_layers = int(conv_stem_layers)
        self.conv_stem_kernel = _pair(conv_stem_kernel, "conv_stem_kernel")
        if self.conv_stem_layers and attention == "local_2d":
            raise ValueError("conv_stem_layers needs raster order (attention=local_1d or global): in local_2d's "
                             "block-raster order a masked convolution would see later pixels; set "
                             "conv_stem_layers=0.")
        unbounded = max_log_scale is None or math.isinf(float(max_log_scale))
        self.max_log_scale = None if unbounded else float(max_log_scale)

        subpixels = distribution == "categorical"
        self.order = PixelOrder(self.image_shape, subpixels, self.query_shape if attention == "local_2d" else None)
        if attention == "local_1d" and self.order.length % self.block_length:
            raise ValueError(
                f"block_length={self.block_length} must divide the number of positions {self.order.length} "
                f"({'H*W*C' if subpixels else 'H*W'} for image_shape={self.image_shape}); choose a divisor."
            )

        self.embedding = PixelEmbedding(
            self.image_shape, self.hidden_size, subpixels, self.order.query_shape, value_embedding=value_embedding,
            start=start, name="embedding",
        )
        self.conv_stem = None
        if self.conv_stem_layers:
            self.conv_stem = CausalConvStem(self.order.grid_shape, self.conv_stem_kernel, self.conv_stem_layers,
                                            name="conv_stem")
            self.conv_stem.embed_values = self.embedding.embed_values
            self.conv_stem.channels_of_positions = self.order.pixel_coordinates()[2].astype("int32")
        kernel_initializer = self._initializer(self.initializer_gain)
        rows, cols, _ = self.order.pixel_coordinates()
        # The pixel row and column of every position in generation order, where a conditioner adds to the input.
        self._rows, self._cols = rows.astype("int32"), cols.astype("int32")  # [length]
        cross_attention = conditioner is not None and conditioner.cross_attention
        self.decoder_blocks = [
            DecoderBlock(self._make_attention(i, kernel_initializer), self.filter_size, self.dropout,
                         cross_attention=cross_attention, norm=norm, kernel_initializer=kernel_initializer,
                         name=f"decoder_block_{i}")
            for i in range(self.num_layers)
        ]
        # Post-norm blocks end normalized; pre-norm leaves the residual stream to a final layer norm.
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm") if norm == "pre" else None
        head_initializer = self._initializer(
            self.initializer_gain if self.head_initializer_gain is None else self.head_initializer_gain)
        if subpixels:
            self.head = CategoricalHead(kernel_initializer=head_initializer, name="head")
        else:
            self.head = DiscretizedLogisticMixtureHead(self.num_mixtures, self.image_shape[-1],
                                                       kernel_initializer=head_initializer,
                                                       max_log_scale=self.max_log_scale, name="head")
        self.bits_per_dim_tracker = keras.metrics.Mean(name="bits_per_dim")
        self.build((None, *self.image_shape))

    @staticmethod
    def _initializer(gain):
        """`glorot_uniform` scaled in variance by `gain` (exactly Keras' `glorot_uniform` at 1.0)."""
        if gain == 1.0:
            return keras.initializers.GlorotUniform()
        return keras.initializers.VarianceScaling(gain, mode="fan_avg", distribution="uniform")

    def _make_attention(self, index, kernel_initializer):
        kwargs = dict(name=f"attention_{index}", kernel_initializer=kernel_initializer)
        if self.attention_type == "global":
            return GlobalSelfAttention(self.num_heads, **kwargs)
        if self.attention_type == "local_1d":
            return LocalSelfAttention1D(self.num_heads, self.block_length, self.memory_length, **kwargs)
        return LocalSelfAttention2D(
            self.num_heads, self.order.grid_shape, self.query_shape, self.memory_flange, **kwargs
        )

    # --------------------------------------------------------------------------------------------------------------
    # Shapes and building.
    # --------------------------------------------------------------------------------------------------------------
    def build(self, input_shape=None):
        sequence_shape = (None, self.order.length, self.hidden_size)
        self.embedding.build((None, self.order.length, self.order.token_size))
        if self.conv_stem is not None:
            self.conv_stem.build(sequence_shape)
        if self.conditioner is not None:
            self.conditioner.build(None if self.condition.spec() is None else self.condition.spec().shape)
        for block in self.decoder_blocks:
            block.build(sequence_shape)
        if self.final_norm is not None:
            self.final_norm.build(sequence_shape)
        self.head.build(sequence_shape)
        self.built = True

    # --------------------------------------------------------------------------------------------------------------
    # Forward passes.
    # --------------------------------------------------------------------------------------------------------------
    def prefill_length(self, known_length):
        """Positions the prefill of `known_length` given positions runs over: whole attention blocks."""
        unit = self.decoder_blocks[0].attention.prefix_unit
        return min(self.order.length, -(-int(known_length) // unit) * unit)

    def conditioning(self, condition, training=None):
        """What the decoder needs of a condition, computed once per image; part of the decoder state.

        Returns `{}` for an unconditional model, else the conditioner's state (`ClassConditioner`: the class
        embedding `"condition"` `[B, 1, hidden]`; `LowResEncoder`: the encoder's output `"memory"` `[B, h * w,
        hidden]`) and, with cross-attention, `"cross"`: each decoder block's cross-attention keys and values of the
        memory (computed here once, read by every step).
        """
        self.condition.check(condition)
        if self.conditioner is None:
            return {}
        state = self.conditioner(condition, training=training)
        if self.conditioner.cross_attention:
            state["cross"] = [block.cross_attention.memory_keys_values(state["memory"])
                              for block in self.decoder_blocks]
        return state

    def _add_condition(self, x, conditioning, position=None):
        """The decoder input `x` `[B, length, hidden]` (positions `0..length-1`, or the one `position` of a
        step) plus what the conditioner adds to it there."""
        if self.conditioner is None:
            return x
        if position is None:
            rows, cols = self._rows[: x.shape[1]], self._cols[: x.shape[1]]
        else:
            rows, cols = tf.gather(self._rows, [position]), tf.gather(self._cols, [position])
        return self.conditioner.add_to_inputs(x, conditioning, rows, cols)

    def _cross(self, conditioning):
        """Per decoder block, the keys and values it cross-attends to (None without cross-attention)."""
        return conditioning.get("cross", [None] * self.num_layers)

    def hidden_states(self, tokens, training=None, cache_position=None, condition=None):
        """Tokens `[B, length, token]` in generation order -> final hidden states `[B, length, hidden]`.

        `tokens` may also be a prefix of the sequence, `prefill_length(n)` positions long. `condition`: the
        classes `[B]` of a class-conditional model, the low-resolution images of a super-resolution model.

        With `cache_position` also returns the decoder state a step at that position expects (the prefill of
        cached decoding; see `init_caches`).
        """
        conditioning = self.conditioning(condition, training=training)
        x = self.embedding(tokens)  # [B, length, hidden]
        stem_state = None
        if self.conv_stem is not None:
            stem = self.conv_stem(tokens, cache_position=cache_position)
            if cache_position is not None:
                stem, stem_state = stem
            x = x + stem
        x = self._add_condition(x, conditioning)
        caches = []
        for block, cross in zip(self.decoder_blocks, self._cross(conditioning)):
            x = block(x, training=training, cache_position=cache_position, memory=cross)
            if cache_position is not None:
                x, cache = x
                caches.append(cache)
        x = self._final_norm(x)
        if cache_position is None:
            return x
        state = {"layers": caches, **conditioning}
        if stem_state is not None:
            state["stem"] = stem_state
        return x, state

    def _final_norm(self, x):
        return x if self.final_norm is None else self.final_norm(x)

    def call(self, inputs, training=None):
        """Head parameters for every position: dmol `[B, H, W, P]`, categorical `[B, H, W, C, 256]` (float32).

        `inputs`: uint8 images `[B, H, W, C]`, or `{"images": ..., "labels": [B]}` for a class-conditional model,
        `{"images": ..., "low_res": [B, h, w, C]}` for a `SuperResolutionTransformer`.
        """
        images, condition = self.split_inputs(inputs)
        self._check_images(images)
        tokens = self.order.to_sequence(tf.cast(images, tf.int32))
        params = self.sequence_params(tokens, training=training, condition=condition)  # [B, length, P]
        return self.order.from_sequence(params)

    def sequence_params(self, tokens, training=None, condition=None):
        """Head parameters `[B, length, P]` in generation order for tokens `[B, length, token]`."""
        return self.head(self.hidden_states(tokens, training=training, condition=condition))

    @property
    def known_rows_multiple(self):
        """local_2d generates whole query blocks: completion starts after a multiple of the block height."""
        return self.query_shape[0] if self.attention_type == "local_2d" else 1

    @property
    def description(self):
        return (f"Image Transformer, {self.attention_type} attention, {self.num_layers} layers, hidden "
                f"{self.hidden_size}, {self.distribution}")

    def step(self, previous_token, state, position):
        """One cached generation step: head parameters `[B, P]` of `position` and the updated decoder state.

        The decoder state is `{"layers": per-layer key/value caches, **conditioning(condition)}`, and `"stem"`
        (the grids of `CausalConvStem`) with a convolutional stem.
        """
        x = self.embedding.step(previous_token, position)  # [B, 1, hidden]
        if self.conv_stem is not None:
            stem, stem_state = self.conv_stem.step(previous_token, state["stem"], position)
            x = x + stem
            state = {**state, "stem": stem_state}
        x = self._add_condition(x, state, position)
        new_caches = []
        for block, cache, cross in zip(self.decoder_blocks, state["layers"], self._cross(state)):
            x, cache = block.step(x, cache, position, memory=cross)
            new_caches.append(cache)
        return self.head(self._final_norm(x))[:, 0], {**state, "layers": new_caches}

    @property
    def decode_period(self):
        """Positions per query block whose attention window the decoder must cut anew (`begin_block`)."""
        return self.decoder_blocks[0].attention.decode_period or self.order.length

    def begin_block(self, state, position):
        """The decoder state with every layer's window moved to the query block that starts at `position`."""
        caches = [block.attention.begin_block(cache, position)
                  for block, cache in zip(self.decoder_blocks, state["layers"])]
        return {**state, "layers": caches}

    def init_caches(self, batch_size, condition=None):
        """The decoder state before any position: empty per-layer key/value caches for `batch_size` images (and
        the `conditioning` of `condition` for a conditional model)."""
        caches = [block.attention.init_cache(batch_size, self.compute_dtype) for block in self.decoder_blocks]
        state = {"layers": caches, **self.conditioning(condition, training=False)}
        if self.conv_stem is not None:
            state["stem"] = self.conv_stem.init_cache(batch_size, self.compute_dtype)
        return state

    def load_own_variables(self, store):
        """Loads the model's own variables (none) and lets files written before the condition went through
        `conditioner` load as they are.

        Such files (class-conditional and super-resolution models saved before 2026-12-06) hold the conditioner's
        layers among the model's own: `class_embedding/...`, `encoder_blocks/...`, `encoder_norm/...` and
        `layers/low_res_embedding/...` (Keras saves a layer under the first attribute name that reaches it, and
        `Model.layers` sorts before `low_res_embedding`), where they are now `conditioner/<name>/...`. Keras loads
        this model's own variables before its layers', from the same store; the conditioner's paths are then looked
        up where such a file has them.
        """
        super().load_own_variables(store)
        if self.conditioner is None or not hasattr(store, "has_path") or store.has_path(_CONDITIONER):
            return
        legacy = {name: path for name in _LEGACY_CONDITIONER_LAYERS for path in (name, f"layers/{name}")
                  if store.has_path(path)}
        if not legacy:
            return
        get, prefix = store.get, _CONDITIONER + "/"

        def legacy_get(path):
            if path.startswith(prefix):
                name, _, rest = path[len(prefix):].partition("/")
                path = "/".join(filter(None, (legacy.get(name, name), rest)))
            return get(path)

        store.get = legacy_get

    def get_config(self):
        config = super().get_config()
        config.update(
            image_shape=self.image_shape, attention=self.attention_type, num_layers=self.num_layers,
            hidden_size=self.hidden_size, num_heads=self.num_heads, filter_size=self.filter_size,
            dropout=self.dropout, block_length=self.block_length, memory_length=self.memory_length,
            query_shape=self.query_shape, memory_flange=self.memory_flange, distribution=self.distribution,
            num_mixtures=self.num_mixtures, num_classes=self.num_classes,
            initializer_gain=self.initializer_gain, head_initializer_gain=self.head_initializer_gain,
            value_embedding=self.value_embedding, start=self.start, conv_stem_layers=self.conv_stem_layers,
            conv_stem_kernel=self.conv_stem_kernel, norm=self.norm, max_log_scale=self.max_log_scale,
        )
        if self.conditioner is not None and self.num_classes is None:
            config["conditioner"] = keras.saving.serialize_keras_object(self.conditioner)
        return config

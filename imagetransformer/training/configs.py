"""Training configurations, typed and nested, and the named ones as data.

```
Config
  data:  DataConfig        which images, their split, conditioning (`conditional`) and `task`
  model: ModelConfig       `architecture` and each architecture's own arguments:
           image_transformer: ImageTransformerConfig   (the decoder; also of super-resolution)
           super_resolution:  SuperResolutionConfig    (`--task=super_resolution`: scale, encoder depth)
           pixelcnnpp:        PixelCNNConfig           (`--model=pixelcnnpp`)
  train: TrainConfig       optimization, schedule, checkpoints, precision
```
Every field is also a flag of `python -m imagetransformer.train` of the same name (`--model` is
`model.architecture`); `Config.replace(**flags)` is the one place where flag values become configuration: each name
goes to its section, and a model flag to the architecture `--model` chooses (`--dropout` and `--num_mixtures` exist
for both). Values are checked on construction, with messages naming the flag. A model directory's `config.json`
holds the data and train sections as written by `Config.sections()`, beside the built model's own configuration.

```python
from imagetransformer.training import configs
config = configs.get_config("cifar10_local_2d", batch_size=8)   # a Config
config.train.batch_size, config.model.image_transformer.attention  # 8, "local_2d"
model = config.model.build(image_shape=(32, 32, 3), task=config.data.task)
```
"""

import dataclasses
import math
from typing import Optional, Tuple

CONDITIONAL = ("none", "class")
TASKS = ("generation", "super_resolution")
MIXED_PRECISION = ("float32", "mixed_bfloat16", "mixed_float16")
LR_DECAYS = ("rsqrt", "cosine")
ARCHITECTURES = ("image_transformer", "pixelcnnpp")


def parse_ints(value, count, flag):
    """A list flag's strings (or a sequence of ints) -> tuple of `count` ints, or None if `value` is None."""
    if value is None:
        return None
    try:
        ints = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        ints = ()
    if len(ints) != count:
        shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        raise ValueError(f"--{flag}={shown} must be {count} comma-separated integers.")
    return ints


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"--{name}={value!r} is not supported; choose one of {', '.join(choices)}.")


def _check_int(name, value, minimum=None):
    if isinstance(value, bool) or int(value) != value or (minimum is not None and value < minimum):
        raise ValueError(f"--{name}={value!r} must be an integer" + (f" >= {minimum}." if minimum is not None
                                                                     else "."))


class _Section:
    """A frozen dataclass of flags: `replace` coerces flag values (lists of strings for pairs) to the fields'
    types."""

    def replace(self, **values):
        fields = {f.name: f for f in dataclasses.fields(self)}
        coerced = {}
        for name, value in values.items():
            default = fields[name].default
            if isinstance(default, tuple) and value is not None:
                value = parse_ints(value, len(default), name)
            elif name == "image_shape" and value is not None:
                value = parse_ints(value, 3, name)
            coerced[name] = value
        return dataclasses.replace(self, **coerced)


@dataclasses.dataclass(frozen=True)
class DataConfig(_Section):
    """Which images: a tensorflow-datasets `dataset` (Fashion-MNIST offline from Debian's files), optionally
    resized to `image_shape`; whether their labels condition the model (`conditional`: none or class, whose
    `num_classes` comes from the dataset); the `task` (generation, or super_resolution: each image given its
    version downsampled by `scale`); the splits; validation size; shuffling."""

    dataset: str = "fashion_mnist"
    data_dir: Optional[str] = None
    image_shape: Optional[Tuple[int, int, int]] = None  # None: the dataset's own
    conditional: str = "none"
    task: str = "generation"
    # Validation (which BENCHMARKS.md's screens select on) uses held-out training images; the test split is for
    # final figures only (`python -m imagetransformer.evaluate --split=test`).
    train_split: str = "train[:95%]"
    val_split: str = "train[95%:]"
    val_examples: int = 256
    shuffle_buffer: int = 10_000

    def __post_init__(self):
        if not self.dataset:
            raise ValueError("--dataset must name a tensorflow-datasets image dataset, e.g. fashion_mnist or "
                             "cifar10.")
        _check_choice("conditional", self.conditional, CONDITIONAL)
        _check_choice("task", self.task, TASKS)
        if self.task == "super_resolution" and self.conditional != "none":
            raise ValueError("--task=super_resolution is conditioned on the low-resolution image; it takes "
                             f"--conditional=none, not --conditional={self.conditional}.")
        _check_int("val_examples", self.val_examples, 0)
        _check_int("shuffle_buffer", self.shuffle_buffer, 1)


@dataclasses.dataclass(frozen=True)
class ImageTransformerConfig(_Section):
    """`ImageTransformer`'s arguments (see its docstring). The defaults: a small local 1D model of Fashion-MNIST
    that learns visibly within a few hundred steps on two CPU cores (28 x 28 = 784 positions = 7 query blocks of
    112, each also attending to the 112 positions before it), with the likelihood screen's choices (BENCHMARKS.md):
    tensor2tensor's initializer gain and one causal convolution over the earlier pixels, 3.125 validation bits/dim
    after 1,000 steps against 3.552 without them."""

    attention: str = "local_1d"
    num_layers: int = 3
    hidden_size: int = 64
    num_heads: int = 4
    filter_size: int = 256
    dropout: float = 0.0
    block_length: int = 112
    memory_length: int = 112
    query_shape: Tuple[int, int] = (7, 14)  # local_2d: 4 x 2 query blocks on the 28 x 28 grid
    memory_flange: Tuple[int, int] = (7, 14)
    distribution: str = "dmol"
    num_mixtures: int = 5
    initializer_gain: float = 0.2
    head_initializer_gain: Optional[float] = None
    value_embedding: str = "table"
    start: str = "learned"
    conv_stem_layers: int = 1
    conv_stem_kernel: Tuple[int, int] = (2, 2)
    norm: str = "pre"
    max_log_scale: Optional[float] = 3.0

    def __post_init__(self):
        if self.max_log_scale is not None and math.isinf(float(self.max_log_scale)):
            object.__setattr__(self, "max_log_scale", None)  # --max_log_scale=inf: no upper clip


@dataclasses.dataclass(frozen=True)
class SuperResolutionConfig(_Section):
    """`SuperResolutionTransformer`'s own arguments (the decoder's are the `ImageTransformerConfig`): 7x7 -> 28x28
    (scale 4) by default, an encoder as deep as the decoder (`encoder_layers=None`)."""

    scale: int = 4
    encoder_layers: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class PixelCNNConfig(_Section):
    """`PixelCNNPlusPlus`'s arguments. The defaults: 14 filters, 2 gated resnets per scale, 3 scales, 186k
    parameters, about the 167k of the default Image Transformer."""

    num_filters: int = 14
    num_resnets: int = 2
    num_scales: int = 3
    dropout: float = 0.0
    num_mixtures: int = 5


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The `architecture` (`--model`) and the arguments of each; `build` makes the model a task needs."""

    architecture: str = "image_transformer"
    image_transformer: ImageTransformerConfig = ImageTransformerConfig()
    super_resolution: SuperResolutionConfig = SuperResolutionConfig()
    pixelcnnpp: PixelCNNConfig = PixelCNNConfig()

    def __post_init__(self):
        _check_choice("model", self.architecture, ARCHITECTURES)

    def sections(self, task):
        """The argument sections of the model `task` needs, by name."""
        if self.architecture == "pixelcnnpp":
            return {"pixelcnnpp": self.pixelcnnpp}
        if task == "super_resolution":
            return {"image_transformer": self.image_transformer, "super_resolution": self.super_resolution}
        return {"image_transformer": self.image_transformer}

    def registry_name(self, task):
        """The `imagetransformer.models.MODELS` name of the model `task` needs."""
        if task == "super_resolution":
            if self.architecture != "image_transformer":
                raise ValueError(f"--task=super_resolution needs --model=image_transformer (the encoder-decoder "
                                 f"Image Transformer); --model={self.architecture} has no super-resolution "
                                 "variant.")
            return "super_resolution_transformer"
        return self.architecture

    def kwargs(self, task):
        """The constructor arguments of the model `task` needs (without `image_shape`)."""
        kwargs = {}
        for section in self.sections(task).values():
            kwargs.update(dataclasses.asdict(section))
        return kwargs

    def build(self, image_shape, task="generation", num_classes=None):
        """The model (`ImageTransformer`, `SuperResolutionTransformer`, `PixelCNNPlusPlus`) of `task` on images
        of `image_shape`; class-conditional with `num_classes`."""
        from imagetransformer import models  # pylint: disable=import-outside-toplevel

        name = self.registry_name(task)
        kwargs = self.kwargs(task)
        if num_classes is not None:
            if self.architecture != "image_transformer":
                raise ValueError(f"--conditional=class needs --model=image_transformer (--model={self.architecture} "
                                 "has no class conditioning).")
            kwargs["num_classes"] = num_classes
        return models.MODELS[name](image_shape=tuple(image_shape), **kwargs)


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Section):
    """Optimization (Adam, warm-up then `lr_decay`, clipping), length, checkpoints, precision, seed."""

    train_steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    lr_decay: str = "rsqrt"
    clipnorm: float = 1.0
    steps_per_epoch: int = 100
    save_every: int = 50
    mixed_precision: str = "float32"
    jit_compile: Optional[bool] = None  # Keras' choice: XLA on GPU/TPU, not on CPU
    steps_per_execution: int = 1
    seed: int = 0

    def __post_init__(self):
        _check_choice("lr_decay", self.lr_decay, LR_DECAYS)
        _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        for name, minimum in (("train_steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("steps_per_epoch", 1),
                              ("save_every", 1), ("steps_per_execution", 1), ("seed", None)):
            _check_int(name, getattr(self, name), minimum)
        for name in ("train_steps", "steps_per_epoch", "save_every"):
            if getattr(self, name) % self.steps_per_execution:
                raise ValueError(f"--{name}={getattr(self, name)} must be a multiple of --steps_per_execution="
                                 f"{self.steps_per_execution} (training stops, saves and validates only between "
                                 "executions).")
        if not float(self.learning_rate) > 0:
            raise ValueError(f"--learning_rate={self.learning_rate!r} must be positive.")
        if not float(self.clipnorm or 0) >= 0:
            raise ValueError(f"--clipnorm={self.clipnorm!r} must be >= 0 (0 disables clipping).")


def _names(section_type):
    return tuple(f.name for f in dataclasses.fields(section_type))


DATA_KEYS = _names(DataConfig)
TRAIN_KEYS = _names(TrainConfig)
# Every model flag: --model and each architecture's arguments (--dropout and --num_mixtures are two architectures').
MODEL_KEYS = tuple(dict.fromkeys(("model",) + _names(ImageTransformerConfig) + _names(SuperResolutionConfig)
                                 + _names(PixelCNNConfig)))
KEYS = DATA_KEYS + MODEL_KEYS + TRAIN_KEYS


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole training configuration: `data`, `model`, `train`."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def __post_init__(self):
        self.model.registry_name(self.data.task)  # --task=super_resolution needs the Image Transformer
        if self.data.conditional == "class" and self.model.architecture != "image_transformer":
            raise ValueError(f"--conditional=class needs --model=image_transformer (--model="
                             f"{self.model.architecture} has no class conditioning).")

    def replace(self, **flags):
        """A copy with the given flag values (flag names, `--model` as `model`; None values are ignored).

        A model flag goes to the architecture `--model` chooses (given here or already set), and to the
        super-resolution section for `--scale` and `--encoder_layers`. Raises ValueError for an unknown flag, a
        model flag the chosen architecture does not take, or a bad value.
        """
        flags = {k: v for k, v in flags.items() if v is not None}
        unknown = sorted(set(flags) - set(KEYS))
        if unknown:
            raise ValueError(f"Unknown configuration keys {unknown}; valid keys: {', '.join(KEYS)}.")
        data = self.data.replace(**{k: v for k, v in flags.items() if k in DATA_KEYS})
        train = self.train.replace(**{k: v for k, v in flags.items() if k in TRAIN_KEYS})
        model = self.model
        if "model" in flags:
            model = dataclasses.replace(model, architecture=flags["model"])
        model_flags = {k: v for k, v in flags.items() if k in MODEL_KEYS and k != "model"}
        sections = {"image_transformer": model.image_transformer, "super_resolution": model.super_resolution,
                    "pixelcnnpp": model.pixelcnnpp}
        chosen = ("pixelcnnpp",) if model.architecture == "pixelcnnpp" else ("image_transformer", "super_resolution")
        for name, value in model_flags.items():
            targets = [s for s in chosen if name in _names(type(sections[s]))]
            if not targets:
                owner = next(s for s, section in sections.items() if name in _names(type(section)))
                raise ValueError(f"--{name} is an argument of {owner}, not of --model={model.architecture}.")
            for target in targets:
                sections[target] = sections[target].replace(**{name: value})
        model = dataclasses.replace(model, **sections)
        return Config(data, model, train)

    def flags(self):
        """Every flag's value in this configuration (a model flag: the chosen architecture's, where it has it)."""
        values = {**dataclasses.asdict(self.data), **dataclasses.asdict(self.train), "model": self.model.architecture}
        chosen = self.model.sections(self.data.task).values()
        for section in (self.model.pixelcnnpp, self.model.super_resolution, self.model.image_transformer,
                        *chosen):
            values.update(dataclasses.asdict(section))
        return {key: values[key] for key in KEYS}

    def sections(self, **resolved):
        """The data and train sections of a model directory's `config.json` (JSON-ready; pairs as lists), with
        `resolved` data values (the dataset's `image_shape`) filled in."""
        def plain(section):
            return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(section).items()}

        return {**plain(self.data), **resolved}, plain(self.train)


# The default: see each section's defaults.
FASHION_MNIST_SMALL = Config()

# The paper's CIFAR-10 models at the size of the seed report's re-implementation (the paper's best DMoL model had
# 12-14 layers): 6 layers, hidden 256, 8 heads, filter 512; local 1D with query blocks of 256 and 256 positions of
# memory; local 2D with (8, 16) query blocks and an (8, 16) memory flange on the 32 x 32 pixel grid. These are
# also `ImageTransformer`'s constructor defaults.
CIFAR10_LOCAL_1D = FASHION_MNIST_SMALL.replace(
    dataset="cifar10", attention="local_1d",
    initializer_gain=1.0, conv_stem_layers=0,  # the screen's choices are measured on Fashion-MNIST only
    num_layers=6, hidden_size=256, num_heads=8, filter_size=512, dropout=0.1, block_length=256, memory_length=256,
    query_shape=(8, 16), memory_flange=(8, 16), num_mixtures=10,
    train_steps=500_000, batch_size=32, learning_rate=5e-4, warmup_steps=4000, clipnorm=1.0, steps_per_epoch=5000,
    save_every=1000, val_examples=10_000,
)
CIFAR10_LOCAL_2D = CIFAR10_LOCAL_1D.replace(attention="local_2d")
# PixelCNN++ at the paper's CIFAR-10 size (Salimans et al. 2017: 160 filters, 5 resnets, 3 scales, dropout 0.5).
CIFAR10_PIXELCNNPP = CIFAR10_LOCAL_1D.replace(model="pixelcnnpp", num_filters=160, num_resnets=5, dropout=0.5,
                                              num_mixtures=10, learning_rate=1e-3)
FASHION_MNIST_PIXELCNNPP = FASHION_MNIST_SMALL.replace(model="pixelcnnpp")
# Local 2D attention generates in block-raster order, where a masked convolution would see later pixels: no stem.
FASHION_MNIST_LOCAL_2D = FASHION_MNIST_SMALL.replace(attention="local_2d", conv_stem_layers=0)
# Super-resolution (the paper's second conditional use): 7x7 -> 28x28 Fashion-MNIST, 8x8 -> 32x32 CIFAR-10.
FASHION_MNIST_SUPER_RESOLUTION = FASHION_MNIST_SMALL.replace(task="super_resolution")
CIFAR10_SUPER_RESOLUTION = CIFAR10_LOCAL_1D.replace(task="super_resolution")
# Full causal attention over all 1024 positions: the reference the local variants approximate.
CIFAR10_GLOBAL = CIFAR10_LOCAL_1D.replace(attention="global")

# For tests: seconds per run. Block sizes divide both Fashion-MNIST (28 x 28) and CIFAR-10 (32 x 32) grids.
_TINY_TRAIN = dict(train_steps=4, batch_size=4, learning_rate=1e-3, warmup_steps=2, steps_per_epoch=2, save_every=2,
                   val_examples=8, shuffle_buffer=64)
TINY = FASHION_MNIST_SMALL.replace(
    initializer_gain=1.0, conv_stem_layers=0,  # every attention, local_2d too
    num_layers=1, hidden_size=16, num_heads=2, filter_size=32, block_length=16, memory_length=16,
    query_shape=(4, 4), memory_flange=(2, 2), num_mixtures=2, **_TINY_TRAIN,
).replace(model="pixelcnnpp", num_filters=4, num_resnets=1, num_mixtures=2).replace(model="image_transformer")

CONFIGS = {
    "fashion_mnist_small": FASHION_MNIST_SMALL,
    "cifar10_local_1d": CIFAR10_LOCAL_1D,
    "cifar10_local_2d": CIFAR10_LOCAL_2D,
    "cifar10_global": CIFAR10_GLOBAL,
    "cifar10_pixelcnnpp": CIFAR10_PIXELCNNPP,
    "fashion_mnist_pixelcnnpp": FASHION_MNIST_PIXELCNNPP,
    "fashion_mnist_local_2d": FASHION_MNIST_LOCAL_2D,
    "fashion_mnist_super_resolution": FASHION_MNIST_SUPER_RESOLUTION,
    "cifar10_super_resolution": CIFAR10_SUPER_RESOLUTION,
    "tiny": TINY,
}
DEFAULT_CONFIG = "fashion_mnist_small"


def get_config(name=DEFAULT_CONFIG, **flags):
    """The configuration `name` with the flag values `flags` applied (None values are ignored): a `Config`.

    Raises:
        ValueError: unknown configuration name or key, or a bad value.
    """
    if name not in CONFIGS:
        raise ValueError(f"--config={name!r} is not a known configuration; choose one of {', '.join(CONFIGS)}.")
    return CONFIGS[name].replace(**flags)

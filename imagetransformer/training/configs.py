"""Named training configurations, as plain data.

A configuration is a flat dict whose keys are the names of `imagetransformer.train`'s flags; `--config=NAME`
starts from `CONFIGS[NAME]` and every flag given on the command line overrides its key. The keys fall into three
sections, which are also the sections of a model directory's `config.json`:

- `DATA_KEYS`: which images (`dataset`, `data_dir`, `image_shape`), whether their class labels condition the
  model (`conditional`: `none` or `class`; a class-conditional model gets `num_classes` from the dataset), and the
  `task`: `generation` (images alone) or `super_resolution` (images given their versions downsampled by `scale`:
  the encoder-decoder `SuperResolutionTransformer`);
- `MODEL_KEYS`: `model` (the architecture: `image_transformer` or `pixelcnnpp`) and the constructor arguments of
  the architectures (`imagetransformer.models.build` passes each only its own; `image_shape` comes from the data);
- `TRAIN_KEYS`: optimization, schedule, checkpointing and validation.

```python
from imagetransformer.training import configs
config = configs.get_config("cifar10_local_2d", batch_size=8)
data, model, train = configs.split(config)
```
"""

import copy

DATA_KEYS = ("dataset", "data_dir", "image_shape", "conditional", "task")
CONDITIONAL = ("none", "class")
TASKS = ("generation", "super_resolution")
MODEL_KEYS = (
    "model", "num_filters", "num_resnets", "num_scales",  # --model=pixelcnnpp
    "scale", "encoder_layers",  # --task=super_resolution
    "attention", "num_layers", "hidden_size", "num_heads", "filter_size", "dropout", "block_length",
    "memory_length", "query_shape", "memory_flange", "distribution", "num_mixtures",
    # Choices that change how fast the Image Transformer learns (see BENCHMARKS.md's likelihood screen).
    "initializer_gain", "head_initializer_gain", "value_embedding", "start", "conv_stem_layers", "conv_stem_kernel",
    "norm", "max_log_scale",
)
TRAIN_KEYS = (
    "train_steps", "batch_size", "learning_rate", "warmup_steps", "lr_decay", "clipnorm", "steps_per_epoch",
    "save_every", "train_split", "val_split", "val_examples", "mixed_precision", "jit_compile", "steps_per_execution", "shuffle_buffer", "seed",
)
KEYS = DATA_KEYS + MODEL_KEYS + TRAIN_KEYS

MIXED_PRECISION = ("float32", "mixed_bfloat16", "mixed_float16")
LR_DECAYS = ("rsqrt", "cosine")

# The default: a small local 1D model of Fashion-MNIST that learns visibly within a few hundred steps on two CPU
# cores. 28 x 28 = 784 positions = 7 query blocks of 112, each also attending to the 112 positions before it.
FASHION_MNIST_SMALL = dict(
    dataset="fashion_mnist",
    data_dir=None,
    image_shape=None,  # the dataset's own (28, 28, 1)
    conditional="none",
    task="generation",
    model="image_transformer",
    # --task=super_resolution: 7x7 -> 28x28 (scale 4), an encoder as deep as the decoder (encoder_layers=None).
    scale=4,
    encoder_layers=None,
    # PixelCNN++ (--model=pixelcnnpp): 14 filters, 2 gated resnets per scale, 3 scales: 186k parameters, about
    # the 167k of this Image Transformer.
    num_filters=14,
    num_resnets=2,
    num_scales=3,
    attention="local_1d",
    num_layers=3,
    hidden_size=64,
    num_heads=4,
    filter_size=256,
    dropout=0.0,
    block_length=112,
    memory_length=112,
    query_shape=(7, 14),  # used with --attention=local_2d: 4 x 2 query blocks on the 28 x 28 grid
    memory_flange=(7, 14),
    distribution="dmol",
    num_mixtures=5,
    # From the likelihood screen (BENCHMARKS.md): tensor2tensor's initializer gain and one causal convolution
    # over the earlier pixels, 3.125 validation bits/dim after 1,000 steps against 3.552 without them.
    initializer_gain=0.2,
    head_initializer_gain=None,
    value_embedding="table",
    start="learned",
    conv_stem_layers=1,
    conv_stem_kernel=(2, 2),
    norm="pre",
    max_log_scale=3.0,
    train_steps=2000,
    batch_size=16,
    learning_rate=2e-3,
    warmup_steps=100,
    lr_decay="rsqrt",
    clipnorm=1.0,
    steps_per_epoch=100,
    save_every=50,
    # Validation (which the screens of BENCHMARKS.md select on) uses held-out training images; the test split is
    # for final figures only (`python -m imagetransformer.evaluate --split=test`).
    train_split="train[:95%]",
    val_split="train[95%:]",
    val_examples=256,
    mixed_precision="float32",
    jit_compile=None,  # Keras' choice: XLA on GPU/TPU, not on CPU
    steps_per_execution=1,
    shuffle_buffer=10_000,
    seed=0,
)

# The paper's CIFAR-10 models at the size of the seed report's re-implementation (the paper's best DMoL model had
# 12-14 layers): 6 layers, hidden 256, 8 heads, filter 512; local 1D with query blocks of 256 and 256 positions of
# memory; local 2D with (8, 16) query blocks and an (8, 16) memory flange on the 32 x 32 pixel grid.
CIFAR10_LOCAL_1D = dict(
    FASHION_MNIST_SMALL,
    dataset="cifar10",
    attention="local_1d",
    initializer_gain=1.0,  # the screen's choices are measured on Fashion-MNIST only
    conv_stem_layers=0,
    num_layers=6,
    hidden_size=256,
    num_heads=8,
    filter_size=512,
    dropout=0.1,
    block_length=256,
    memory_length=256,
    query_shape=(8, 16),
    memory_flange=(8, 16),
    num_mixtures=10,
    train_steps=500_000,
    batch_size=32,
    learning_rate=5e-4,
    warmup_steps=4000,
    clipnorm=1.0,
    steps_per_epoch=5000,
    save_every=1000,
    val_examples=10_000,
)
CIFAR10_LOCAL_2D = dict(CIFAR10_LOCAL_1D, attention="local_2d")
# PixelCNN++ at the paper's CIFAR-10 size (Salimans et al. 2017: 160 filters, 5 resnets, 3 scales, dropout 0.5).
CIFAR10_PIXELCNNPP = dict(CIFAR10_LOCAL_1D, model="pixelcnnpp", num_filters=160, num_resnets=5, dropout=0.5,
                          learning_rate=1e-3)
FASHION_MNIST_PIXELCNNPP = dict(FASHION_MNIST_SMALL, model="pixelcnnpp")
# Local 2D attention generates in block-raster order, where a masked convolution would see later pixels: no stem.
FASHION_MNIST_LOCAL_2D = dict(FASHION_MNIST_SMALL, attention="local_2d", conv_stem_layers=0)
# Super-resolution (the paper's second conditional use): 7x7 -> 28x28 Fashion-MNIST, 8x8 -> 32x32 CIFAR-10.
FASHION_MNIST_SUPER_RESOLUTION = dict(FASHION_MNIST_SMALL, task="super_resolution")
CIFAR10_SUPER_RESOLUTION = dict(CIFAR10_LOCAL_1D, task="super_resolution")
# Full causal attention over all 1024 positions: the reference the local variants approximate.
CIFAR10_GLOBAL = dict(CIFAR10_LOCAL_1D, attention="global")

# For tests: seconds per run. Block sizes divide both Fashion-MNIST (28 x 28) and CIFAR-10 (32 x 32) grids.
TINY = dict(
    FASHION_MNIST_SMALL,
    initializer_gain=1.0,
    conv_stem_layers=0,  # every attention, local_2d too
    num_layers=1,
    hidden_size=16,
    num_heads=2,
    filter_size=32,
    num_filters=4,
    num_resnets=1,
    block_length=16,
    memory_length=16,
    query_shape=(4, 4),
    memory_flange=(2, 2),
    num_mixtures=2,
    train_steps=4,
    batch_size=4,
    learning_rate=1e-3,
    warmup_steps=2,
    steps_per_epoch=2,
    save_every=2,
    val_examples=8,
    shuffle_buffer=64,
)

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

assert all(set(config) == set(KEYS) for config in CONFIGS.values())


def get_config(name=DEFAULT_CONFIG, **overrides):
    """A copy of the configuration `name` with `overrides` applied (None values are ignored).

    Raises:
        ValueError: unknown configuration name or key.
    """
    if name not in CONFIGS:
        raise ValueError(f"--config={name!r} is not a known configuration; choose one of {', '.join(CONFIGS)}.")
    unknown = sorted(set(overrides) - set(KEYS))
    if unknown:
        raise ValueError(f"Unknown configuration keys {unknown}; valid keys: {', '.join(KEYS)}.")
    config = copy.deepcopy(CONFIGS[name])
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def split(config):
    """`(data, model, train)` sections of a flat configuration, each a new dict."""
    return tuple({k: config[k] for k in keys} for keys in (DATA_KEYS, MODEL_KEYS, TRAIN_KEYS))


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

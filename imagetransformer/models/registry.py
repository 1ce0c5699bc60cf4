"""The model classes by name: what a model directory's `config.json` (`"model": NAME`) and `--model` name.

```python
from imagetransformer import models
model = models.build("pixelcnnpp", image_shape=(28, 28, 1), num_filters=14, num_resnets=2)
models.config_of(model)  # {"model": "pixelcnnpp", "image_shape": [28, 28, 1], "num_filters": 14, ...}
models.build(**models.config_of(model))  # the same architecture again
```
Training configurations (`imagetransformer.training.configs.ModelConfig`) build their model themselves, each
architecture from its own typed section.
"""

from imagetransformer.models.image_transformer import ImageTransformer
from imagetransformer.models.pixelcnnpp import PixelCNNPlusPlus
from imagetransformer.models.super_resolution import SuperResolutionTransformer

# `super_resolution_transformer` is what `--task=super_resolution` trains (with --model=image_transformer).
MODELS = {"image_transformer": ImageTransformer, "pixelcnnpp": PixelCNNPlusPlus,
          "super_resolution_transformer": SuperResolutionTransformer}
DEFAULT_MODEL = "image_transformer"


def build(model=DEFAULT_MODEL, **kwargs):
    """The `model` architecture (`MODELS`) built from its constructor arguments `kwargs`.

    Raises:
        ValueError: unknown architecture, or invalid arguments.
        TypeError: an argument the architecture does not take.
    """
    if model not in MODELS:
        raise ValueError(f"model={model!r} is not a known architecture; choose one of {', '.join(MODELS)}.")
    return MODELS[model](**kwargs)


def name_of(model):
    """The `MODELS` key of a built model."""
    for name, cls in MODELS.items():
        if type(model) is cls:  # pylint: disable=unidiomatic-typecheck
            return name
    raise TypeError(f"{type(model).__name__} is not one of {', '.join(MODELS)}.")


def config_of(model):
    """The constructor arguments of `model` (JSON-serializable) with its `"model"` name, without Keras'
    name/trainable/dtype."""
    config = model.get_config()
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    return {"model": name_of(model), **config}

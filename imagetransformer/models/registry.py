"""The model architectures behind `--model`, built from a configuration's model section.

```python
from imagetransformer import models
model = models.build("pixelcnnpp", image_shape=(28, 28, 1), num_filters=14, num_resnets=2)
models.config_of(model)  # {"model": "pixelcnnpp", "image_shape": [28, 28, 1], "num_filters": 14, ...}
```
A configuration (`imagetransformer.training.configs`) holds the arguments of every architecture; `build` passes each
class only the arguments its constructor takes, so one flat set of flags serves all of them.
"""

import inspect

from imagetransformer.models.base import AutoregressiveImageModel
from imagetransformer.models.image_transformer import ImageTransformer
from imagetransformer.models.pixelcnnpp import PixelCNNPlusPlus
from imagetransformer.models.super_resolution import SuperResolutionTransformer

# `super_resolution_transformer` is what `--task=super_resolution` trains (with --model=image_transformer).
MODELS = {"image_transformer": ImageTransformer, "pixelcnnpp": PixelCNNPlusPlus,
          "super_resolution_transformer": SuperResolutionTransformer}
DEFAULT_MODEL = "image_transformer"


def _arguments(cls):
    """The named constructor arguments of `cls` and of the model classes it forwards `**kwargs` to."""
    names = []
    for base in cls.__mro__:
        if issubclass(base, AutoregressiveImageModel) and "__init__" in vars(base):
            parameters = inspect.signature(base.__init__).parameters.values()
            names += [p.name for p in parameters if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
    return list(dict.fromkeys(names))


def build(model=DEFAULT_MODEL, **kwargs):
    """The `model` architecture (`MODELS`) built from the arguments in `kwargs` that its constructor takes.

    Raises:
        ValueError: unknown architecture, or invalid arguments (named as in the configuration).
    """
    if model not in MODELS:
        raise ValueError(f"model={model!r} is not a known architecture; choose one of {', '.join(MODELS)}.")
    cls = MODELS[model]
    names = _arguments(cls)
    return cls(**{key: value for key, value in kwargs.items() if key in names})


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

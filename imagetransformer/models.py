"""The model architectures behind `--model`, built from a configuration's model section.

```python
from imagetransformer import models
model = models.build("pixelcnnpp", image_shape=(28, 28, 1), num_filters=14, num_resnets=2)
models.config_of(model)  # {"model": "pixelcnnpp", "image_shape": [28, 28, 1], "num_filters": 14, ...}
```
A configuration (`imagetransformer.configs`) holds the arguments of every architecture; `build` passes each
class only the arguments its constructor takes, so one flat set of flags serves all of them.
"""

import inspect

from imagetransformer.model import ImageTransformer
from imagetransformer.pixelcnnpp import PixelCNNPlusPlus

MODELS = {"image_transformer": ImageTransformer, "pixelcnnpp": PixelCNNPlusPlus}
DEFAULT_MODEL = "image_transformer"


def _arguments(cls):
    return [name for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]


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

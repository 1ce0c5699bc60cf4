"""imagetransformer: the Image Transformer (Parmar et al. 2018) in Keras 3 / TensorFlow.

```python
import imagetransformer as it

model = it.ImageTransformer(image_shape=(28, 28, 1), attention="local_1d", ...)
model.log_prob(images)                                   # [B] nats
baseline = it.PixelCNNPlusPlus(image_shape=(28, 28, 1), num_filters=14, num_resnets=2)  # same interface
it.complete(model, images, known_rows=14, seed=0)        # bottom half from the top half
sr = it.SuperResolutionTransformer(image_shape=(28, 28, 1), scale=4, ...)
it.super_resolve(sr, low_res, temperature=0.8, seed=0)   # [B, 7, 7, 1] -> [B, 28, 28, 1]
pretrained = it.from_preset("fashion_mnist_local_1d")    # it.list_presets() lists the shipped ones
```
Importing the package registers every layer and model with Keras, so `keras.models.load_model` opens saved
models with `safe_mode=True`.

The library reads as the data flow, one subpackage per idea: `data` (images in, `tf.data` out) -> `ordering` (images
as sequences of positions) -> `layers` (embedding, attention, blocks) -> `heads` (parameters -> distributions) ->
`models` -> `generation` (decoding, sampling) -> `evaluation` and `export` (SavedModel signatures for TF Serving);
`conditioning` names what a model generates images given; `training` holds configurations, schedules, strategies and
model directories; `presets` the pretrained models. The command-line programs (`train`, `evaluate`, `complete`,
`super_resolve`, `export`, with `cli` for their flags and one-line errors) sit beside them and only drive the
library.

Importing the package before TensorFlow hides TensorFlow's C++ INFO and WARNING lines (XLA start-up notes, oneDNN
notices), which are not about anything a user did; its errors still show. `TF_CPP_MIN_LOG_LEVEL=0` in the
environment brings them back (an explicit value always wins).
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from imagetransformer import heads, layers
from imagetransformer.generation import complete, sample, super_resolve
from imagetransformer.models import ATTENTIONS, ImageTransformer, PixelCNNPlusPlus, SuperResolutionTransformer
from imagetransformer.ordering import DISTRIBUTIONS, PixelOrder
from imagetransformer.presets import from_preset, list_presets
from imagetransformer.training import schedules

__version__ = "0.1.0"

__all__ = [
    "ATTENTIONS", "DISTRIBUTIONS", "ImageTransformer", "PixelCNNPlusPlus", "PixelOrder", "SuperResolutionTransformer",
    "complete", "from_preset", "heads", "layers", "list_presets", "sample", "schedules", "super_resolve",
]

"""imagetransformer: the Image Transformer (Parmar et al. 2018) in Keras 3 / TensorFlow.

```python
import imagetransformer as it

model = it.ImageTransformer(image_shape=(28, 28, 1), attention="local_1d", ...)
model.log_prob(images)                                   # [B] nats
baseline = it.PixelCNNPlusPlus(image_shape=(28, 28, 1), num_filters=14, num_resnets=2)  # same interface
it.complete(model, images, known_rows=14, seed=0)        # bottom half from the top half
sr = it.SuperResolutionTransformer(image_shape=(28, 28, 1), scale=4, ...)
it.super_resolve(sr, low_res, temperature=0.8, seed=0)   # [B, 7, 7, 1] -> [B, 28, 28, 1]
```
Importing the package registers every layer and model with Keras, so `keras.models.load_model` opens saved
models with `safe_mode=True`.
"""

from imagetransformer import heads, layers, schedules
from imagetransformer.model import ATTENTIONS, ImageTransformer
from imagetransformer.pixelcnnpp import PixelCNNPlusPlus
from imagetransformer.ordering import DISTRIBUTIONS, PixelOrder
from imagetransformer.sampling import complete, sample, super_resolve
from imagetransformer.super_resolution import SuperResolutionTransformer

__version__ = "0.1.0"

__all__ = [
    "ATTENTIONS", "DISTRIBUTIONS", "ImageTransformer", "PixelCNNPlusPlus", "PixelOrder", "SuperResolutionTransformer",
    "complete", "heads", "layers", "sample", "schedules", "super_resolve",
]

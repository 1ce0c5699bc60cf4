"""Models: whole autoregressive image models that map images to head parameters and exact log-likelihoods.

`base.AutoregressiveImageModel` holds what every model shares (likelihood, training step, conditioning inputs);
`ImageTransformer` (masked local/global self-attention), `PixelCNNPlusPlus` (the convolutional baseline) and
`SuperResolutionTransformer` (an encoder over the low-resolution image, cross-attended by the decoder) build on it.
`registry` names them for configurations (`build`, `config_of`).
"""

from imagetransformer.models.base import AutoregressiveImageModel
from imagetransformer.models.image_transformer import ATTENTIONS, ImageTransformer
from imagetransformer.models.pixelcnnpp import PixelCNNPlusPlus
from imagetransformer.models.super_resolution import SuperResolutionTransformer
from imagetransformer.models.registry import DEFAULT_MODEL, MODELS, build, config_of, name_of

__all__ = [
    "ATTENTIONS", "AutoregressiveImageModel", "DEFAULT_MODEL", "ImageTransformer", "MODELS", "PixelCNNPlusPlus",
    "SuperResolutionTransformer", "build", "config_of", "name_of",
]

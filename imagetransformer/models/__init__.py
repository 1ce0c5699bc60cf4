"""Models: whole autoregressive image models that map images to head parameters and exact log-likelihoods.

`base.AutoregressiveImageModel` holds what every model shares (likelihood, training step, conditioning inputs);
`ImageTransformer` (masked local/global self-attention, optionally composed with a conditioner layer: a class
embedding or the low-resolution encoder) and `PixelCNNPlusPlus` (the convolutional baseline) build on it;
`SuperResolutionTransformer` is the Image Transformer composed with a `LowResEncoder`. `registry` names them for
model directories (`build`, `config_of`).
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

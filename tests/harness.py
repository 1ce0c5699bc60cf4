"""The model variants every shared property test runs over (`tests/test_model_properties.py`).

A `Variant` builds a tiny model of one kind (architecture, attention, head, condition) two ways: `make()` with
blocks smaller than the image, so that locality, memory flanges and block boundaries are exercised, and
`make_enumerable()` with images small enough to list every image (1x2x1; 2x2x1 for super-resolution, whose
`scale` must be at least 2). `condition(model, batch, seed)` gives the keyword arguments (`labels=` or `low_res=`)
a conditional model takes beside the images, `{}` for an unconditional one.

A new model kind gets its properties tested by adding its variants to `VARIANTS`.
"""

import dataclasses
import itertools
from typing import Callable

import numpy as np

import imagetransformer as it
from conftest import random_images, tiny_kwargs


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    make: Callable[[], object]
    make_enumerable: Callable[[], object]
    condition: Callable[[object, int, int], dict] = None  # None: unconditional
    # Whether the position right after a changed one always sees it (true of the transformer's own block; PixelCNN++
    # at the end of a row sees only part of the row above).
    next_position_sees_the_last: bool = True

    def __str__(self):
        return self.name

    @property
    def conditional(self):
        return self.condition is not None

    def condition_inputs(self, model, batch, seed):
        """`{"labels": [batch]}`, `{"low_res": [batch, h, w, C]}` or `{}`: random values of the condition."""
        return self.condition(model, batch, seed) if self.conditional else {}


def _small_blocks(distribution):
    """Blocks smaller than a 4x4x3 image: a 1D block of a row, a 2D query block of 2x2 pixels."""
    if distribution == "dmol":
        return dict(block_length=4, memory_length=3, query_shape=(2, 2), memory_flange=(1, 1))
    return dict(block_length=6, memory_length=5, query_shape=(2, 6), memory_flange=(1, 3))  # 12 sub-pixels a row


# Blocks of one position with one position of memory: the smallest model of a 2-pixel image.
_ONE_POSITION_BLOCKS = dict(block_length=1, memory_length=1, query_shape=(1, 1), memory_flange=(0, 1))


def _labels(model, batch, seed):
    return {"labels": (np.arange(batch) + seed) % model.num_classes}  # another seed: another class for every image


def _low_res(model, batch, seed):
    return {"low_res": random_images(batch, model.low_res_shape, seed=seed + 100)}


def _transformer(attention, distribution, kind=None, model=it.ImageTransformer, condition=None,
                 enumerable_shape=(1, 2, 1), **model_kwargs):
    """A variant of the Image Transformer: unconditional, or `kind` ("class", "sr") with its `condition`."""

    def make(image_shape, blocks):
        return model(**model_kwargs, **tiny_kwargs(attention, distribution, image_shape, **blocks))

    return Variant(
        f"{kind + '-' if kind else ''}{attention}-{distribution}",
        lambda: make((4, 4, 3), _small_blocks(distribution)),
        lambda: make(enumerable_shape, _ONE_POSITION_BLOCKS),
        condition=condition,
    )


def _pixelcnnpp(num_scales):
    def make(image_shape, scales):
        return it.PixelCNNPlusPlus(image_shape=image_shape, num_filters=8, num_resnets=1, num_scales=scales,
                                   dropout=0.0, num_mixtures=2)

    # An image of 1x2 pixels cannot be downsampled: one scale.
    return Variant(f"pixelcnnpp-{num_scales}-scales", lambda: make((8, 8, 3), num_scales), lambda: make((1, 2, 1), 1),
                   next_position_sees_the_last=False)


ATTENTIONS = ("global", "local_1d", "local_2d")
# Conditioning is the same for every attention: each conditional kind runs the three attentions with DMoL and one
# with the categorical head.
CONDITIONAL_CASES = [("global", "dmol"), ("local_1d", "dmol"), ("local_2d", "dmol"), ("local_1d", "categorical")]

VARIANTS = (
    [_transformer(a, d) for a, d in itertools.product(ATTENTIONS, ("dmol", "categorical"))]
    + [_transformer(a, d, "class", condition=_labels, num_classes=4) for a, d in CONDITIONAL_CASES]
    # Super-resolution's `scale` must be at least 2: its enumerable images are 2x2.
    + [_transformer(a, d, "sr", it.SuperResolutionTransformer, _low_res, (2, 2, 1), scale=2)
       for a, d in CONDITIONAL_CASES]
    + [_pixelcnnpp(1), _pixelcnnpp(3)]
)

"""Generation: drawing images from a trained model (completion of known rows, unconditional samples,
super-resolution) with the cached decoder or the naive reference decoder."""

from imagetransformer.generation.sampling import complete, sample, super_resolve

__all__ = ["complete", "sample", "super_resolve"]

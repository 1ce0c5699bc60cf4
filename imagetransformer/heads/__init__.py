"""Output heads: per-position parameters -> tfp distributions, exact log-probabilities, and samples."""

from imagetransformer.heads.categorical import CategoricalHead
from imagetransformer.heads.dmol import DiscretizedLogisticMixtureHead

__all__ = ["CategoricalHead", "DiscretizedLogisticMixtureHead"]

"""Evaluation: what is measured and shown of a trained model: bits/dim on a split (`evaluator`), super-resolution
metrics (PSNR, SSIM, consistency) and image grids (`visualize`)."""

from imagetransformer.evaluation.evaluator import EvalResult, evaluate

__all__ = ["EvalResult", "evaluate"]

"""Evaluation: what is measured and shown of a model beside its bits/dim: super-resolution metrics (PSNR, SSIM,
consistency) and image grids."""

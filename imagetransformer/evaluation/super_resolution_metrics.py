"""How good super-resolved images are: PSNR and SSIM against the originals, and consistency with the input.

```python
from imagetransformer.evaluation import super_resolution_metrics as srm
report = srm.evaluate_samples(model, images, temperatures=(0.8, 1.0))
# {"bicubic": {"psnr": 15.9, "ssim": 0.44, "consistent": 0.0, "downsampled_error": 5.9}, "temperature_0.8": ...}
```
- `psnr`, `ssim`: means over images of `tf.image.psnr` / `tf.image.ssim` (max value 255) against the originals;
  higher is closer to the original. A sample is one plausible image, not the expected one, so a model whose
  samples are sharper than the bicubic baseline can still score lower on both (the paper judged its samples
  with human raters for that reason).
- `consistent`: the share of images whose downsampled version (`resize.downsample`, the model's input) differs
  from the low-resolution input by at most one grey level on average: does the sample agree with what it was
  given? `downsampled_error` is that difference itself (grey levels, mean over pixels and images).
"""

import numpy as np
import tensorflow as tf

from imagetransformer.data import resize

from imagetransformer.generation import sampling


def quality(candidates, originals, low_res, scale):
    """`{"psnr", "ssim", "consistent", "downsampled_error"}` of uint8 `candidates` `[N, H, W, C]` against
    `originals` and `low_res`."""
    candidates = tf.convert_to_tensor(candidates, tf.uint8)
    originals = tf.convert_to_tensor(originals, tf.uint8)
    filter_size = min(11, candidates.shape[1], candidates.shape[2])  # tf.image.ssim's 11, or the whole image
    a, b = tf.cast(candidates, tf.float32), tf.cast(originals, tf.float32)
    psnr = tf.image.psnr(a, b, max_val=255.0)  # [N]; inf for an exact copy
    ssim = tf.image.ssim(a, b, max_val=255.0, filter_size=filter_size)
    error = tf.abs(tf.cast(resize.downsample(candidates, scale), tf.float32) - tf.cast(low_res, tf.float32))
    per_image_error = tf.reduce_mean(error, axis=[1, 2, 3])  # [N] grey levels
    return {"psnr": float(np.mean(np.minimum(psnr.numpy(), 100.0))), "ssim": float(np.mean(ssim.numpy())),
            "consistent": float(np.mean(per_image_error.numpy() <= 1.0)),
            "downsampled_error": float(np.mean(per_image_error.numpy()))}


def evaluate_samples(model, images, temperatures=(0.8, 1.0), seed=0, batch_size=64, progress=False):
    """Super-resolves the downsampled `images` at each temperature and scores the samples and bicubic upsampling.

    Args:
        model: a `SuperResolutionTransformer`.
        images: uint8 `[N, H, W, C]` originals.
        temperatures: sampling temperatures.
        seed: seed of image `i` in each batch is `(seed + first index of the batch, i)`; the same for every
            temperature.
        batch_size: images decoded at a time.
        progress: show the decoder's progress bar.

    Returns:
        `{"bicubic": quality, "temperature_<t>": quality, ...}` (see `quality`).
    """
    images = np.asarray(images, np.uint8)
    scale = model.scale
    low_res = resize.downsample(images, scale).numpy()
    report = {"bicubic": quality(resize.bicubic(low_res, scale), images, low_res, scale)}
    for temperature in temperatures:
        samples = []
        for start in range(0, len(images), batch_size):
            samples.append(sampling.super_resolve(model, low_res[start:start + batch_size], temperature=temperature,
                                                  seed=seed + start, progress=progress).numpy())
        report[f"temperature_{temperature:.1f}"] = quality(np.concatenate(samples), images, low_res, scale)
    return report

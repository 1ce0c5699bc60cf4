"""Resolution changes of uint8 images: the low-resolution inputs of super-resolution and its bicubic baseline.

```python
low_res = resize.downsample(images, scale=4)   # uint8 [B, H/4, W/4, C]: each pixel the rounded mean of a 4x4 block
baseline = resize.bicubic(low_res, scale=4)     # uint8 [B, H, W, C]
```
"""

import tensorflow as tf


def check_scale(image_shape, scale):
    """Raises a ValueError unless `scale` is an integer >= 2 that divides the image height and width."""
    height, width = image_shape[:2]
    if isinstance(scale, bool) or int(scale) != scale or scale < 2:
        raise ValueError(f"scale={scale!r} must be an integer >= 2 (4 maps 28x28 to 7x7).")
    if height % scale or width % scale:
        divisors = [d for d in range(2, min(height, width) + 1) if not height % d and not width % d]
        raise ValueError(f"scale={scale} must divide the image height and width {height}x{width}; choose one of "
                         f"{divisors}.")
    return int(scale)


def downsample(images, scale):
    """Area downsampling: each low-resolution pixel is the mean of a `scale x scale` block, rounded.

    Args:
        images: integer `[B, H, W, C]` (values 0..255), `H` and `W` multiples of `scale`.
        scale: integer factor.

    Returns:
        uint8 `[B, H / scale, W / scale, C]`.
    """
    means = tf.nn.avg_pool2d(tf.cast(images, tf.float32), scale, scale, "VALID")  # [B, h, w, C]
    return tf.cast(tf.round(means), tf.uint8)


def bicubic(low_res, scale):
    """Bicubic upsampling by `scale` (the deterministic baseline of super-resolution): uint8 `[B, h*s, w*s, C]`."""
    low_res = tf.convert_to_tensor(low_res)
    size = [low_res.shape[1] * scale, low_res.shape[2] * scale]
    upsampled = tf.image.resize(tf.cast(low_res, tf.float32), size, method="bicubic")
    return tf.cast(tf.clip_by_value(tf.round(upsampled), 0, 255), tf.uint8)

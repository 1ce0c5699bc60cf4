"""Data: images in, `tf.data` out (tfds datasets, Debian's offline Fashion-MNIST files, the batching pipeline),
and the resizing that makes low-resolution inputs (`resize`)."""

from imagetransformer.data.pipeline import (
    DEBIAN_FASHION_MNIST_DIR,
    FASHION_MNIST_DIR_ENV,
    DatasetUnavailableError,
    ImageData,
    as_model_inputs,
    center_crop_and_resize,
    load_images,
    make_pipeline,
    read_idx,
    with_low_res,
)

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR", "FASHION_MNIST_DIR_ENV", "DatasetUnavailableError", "ImageData", "as_model_inputs", "center_crop_and_resize",
    "load_images", "make_pipeline", "read_idx", "with_low_res",
]

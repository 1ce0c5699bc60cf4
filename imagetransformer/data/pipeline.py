"""Images in, `tf.data` out.

`load_images` returns the images of one split of a tensorflow-datasets (tfds) image dataset as a `tf.data.Dataset`
of uint8 tensors `[H, W, C]`, together with the facts a model needs (image shape, number of examples, number of
classes). `make_pipeline` turns such a dataset into batches for training or evaluation.

Where the images come from, in this order:

1. A copy that tfds has already prepared in `data_dir` (or tfds' default data directory). Checking this reads only
   local files.
2. For Fashion-MNIST only: the raw idx files of Debian's package `dataset-fashion-mnist`, read directly with numpy
   from `/usr/share/datasets/fashion-mnist` (override with the `fashion_mnist_dir` argument or the environment
   variable `IMAGETRANSFORMER_FASHION_MNIST_DIR`). They are the files tfds would download, but recompressed, so
   tfds itself refuses them (its checksums differ). They are preferred to a download so that nothing ever waits on
   the network when they are installed.
3. A download by tfds (`builder.download_and_prepare()`), unless `download=False`. Before it starts, one short
   connection to each host the dataset downloads from (`NETWORK_TIMEOUT_S`) checks that they can be reached, so an
   offline machine gets the error at once instead of after minutes of retries.

The split argument takes tfds' syntax on every path: `"train"`, `"test[:1000]"`, `"train[:10%]"`, `"train+test"`.
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import inspect
import os
import re
import socket
import struct
import urllib.parse
import urllib.request
import zlib
from typing import Optional, Sequence, Tuple, Union

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from imagetransformer.data import resize

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_DIR_ENV = "IMAGETRANSFORMER_FASHION_MNIST_DIR"

# Split name -> file name prefix of the idx files (the names Debian and the original distribution use).
_FASHION_MNIST_FILES = {"train": "train", "test": "t10k"}
_FASHION_MNIST_SHAPE = (28, 28, 1)
_FASHION_MNIST_CLASSES = 10

_IDX_UBYTE = 0x08

_HOW_TO_GET_DATA = (
    "To get it: with internet access tensorflow-datasets downloads it (leave download=True); or pass "
    "--data_dir / data_dir= pointing at a directory where tfds has already prepared it"
)
_HOW_TO_GET_FASHION_MNIST = (
    "; or, for Fashion-MNIST offline, `apt-get install dataset-fashion-mnist` (files in "
    f"{DEBIAN_FASHION_MNIST_DIR}) or set {FASHION_MNIST_DIR_ENV} to a directory holding its four "
    "*-idx*-ubyte.gz files"
)


@dataclasses.dataclass(frozen=True)
class ImageData:
    """The images of one split and what is known about them.

    Attributes:
        dataset: `tf.data.Dataset` of uint8 images `[H, W, C]`, or of `(image, label)` pairs with int64 scalar labels
            when loaded with `with_labels=True`. Deterministic order, not batched, not repeated.
        image_shape: `(H, W, C)` of every image in `dataset`.
        num_examples: number of elements in `dataset`, or None where tfds does not know it.
        num_classes: number of label classes, or None where the dataset has no class labels.
        source: where the images came from: `"tfds"` or `"debian:<directory>"`.
    """

    dataset: tf.data.Dataset
    image_shape: Tuple[int, int, int]
    num_examples: Optional[int]
    num_classes: Optional[int]
    source: str

    @property
    def in_memory(self) -> bool:
        """Whether the images are already in memory (Debian's files are read whole), so a cache would only copy
        them (and warn when training stops before its first full pass)."""
        return self.source.startswith("debian:")


class DatasetUnavailableError(RuntimeError, ValueError):
    """A dataset that is neither on this machine nor downloadable; the message says how to get it.

    A `ValueError` like every other error a user can fix (the programs print it as one line)."""


def load_images(
    name: str,
    split: str,
    *,
    data_dir: Optional[str] = None,
    image_shape: Optional[Sequence[int]] = None,
    with_labels: bool = False,
    fashion_mnist_dir: Optional[str] = None,
    download: bool = True,
    shuffle_files: bool = False,
) -> ImageData:
    """Loads one split of a tfds image dataset as uint8 images.

    Args:
        name: tfds dataset name, optionally with config and version: `"fashion_mnist"`, `"mnist"`, `"cifar10"`,
            `"imagenet_resized/32x32"`, ... The dataset must have an `"image"` feature.
        split: split in tfds syntax, e.g. `"train"`, `"test[:16]"`, `"train[:10%]"`, `"train+test"`.
        data_dir: tfds data directory; None means tfds' default (`~/tensorflow_datasets` or `$TFDS_DATA_DIR`).
        image_shape: `(H, W, C)` wanted. Images of another height or width are centrally cropped to the aspect ratio
            of `(H, W)` and resized to it (staying uint8). Required for datasets whose images have no fixed shape.
        with_labels: yield `(image, label)` pairs (label int64) instead of images alone.
        fashion_mnist_dir: directory of Debian's Fashion-MNIST idx files; None means
            `$IMAGETRANSFORMER_FASHION_MNIST_DIR` or else `/usr/share/datasets/fashion-mnist`.
        download: allow tfds to download and prepare the dataset when no local copy exists.
        shuffle_files: passed to tfds (shuffles the order of its shard files; useful for training on large datasets).

    Returns:
        An `ImageData`.

    Raises:
        ValueError: unknown dataset, dataset without images, unknown split or bad slice, channel count of
            `image_shape` differing from the dataset's, no fixed image shape and none given, or corrupt idx files.
        RuntimeError: no local copy of the dataset and it could not be downloaded (the message says how to get it).
    """
    builder = _builder(name, data_dir)
    base_name = builder.name  # tfds' own name: "fashion_mnist" for "Fashion_MNIST" or "fashion_mnist:3.*.*"
    if _is_prepared(builder):
        logging.info("Reading %s (%s) from the tfds copy in %s.", name, split, builder.data_dir)
        data = _load_tfds(builder, name, split, with_labels, shuffle_files)
    else:
        debian_dir = _fashion_mnist_dir(fashion_mnist_dir) if base_name == "fashion_mnist" else None
        if debian_dir is not None:
            logging.info("Reading %s (%s) from the idx files in %s (no prepared tfds copy in %s).", name, split,
                         debian_dir, builder.data_dir)
            data = _load_fashion_mnist_idx(debian_dir, split, with_labels)
        else:
            _download_and_prepare(builder, name, base_name, download)
            data = _load_tfds(builder, name, split, with_labels, shuffle_files)
    return _fit_to_shape(data, name, image_shape, with_labels)


def with_low_res(dataset: tf.data.Dataset, scale: int) -> tf.data.Dataset:
    """Batches of images -> `{"images": ..., "low_res": ...}` dicts, the inputs of a super-resolution model; the
    low-resolution images are the images area-downsampled by `scale` (`imagetransformer.data.resize.downsample`)."""
    return dataset.map(lambda images: {"images": images, "low_res": resize.downsample(images, scale)},
                       num_parallel_calls=tf.data.AUTOTUNE)


def as_model_inputs(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Batches of `(images, labels)` pairs -> `{"images": ..., "labels": ...}` dicts, the inputs of a
    class-conditional model (Keras' `fit` would take the second element of a pair for targets)."""
    return dataset.map(lambda images, labels: {"images": images, "labels": tf.cast(labels, tf.int64)},
                       num_parallel_calls=tf.data.AUTOTUNE)


def make_pipeline(
    dataset: tf.data.Dataset,
    batch_size: int,
    *,
    training: bool,
    shuffle_buffer: int = 10_000,
    cache: Union[bool, str] = True,
    seed: Optional[int] = None,
    drop_remainder: Optional[bool] = None,
    with_labels: bool = False,
) -> tf.data.Dataset:
    """Batches a dataset from `load_images` for training or evaluation.

    The order is: drop labels (unless `with_labels`), cache, shuffle and repeat (training only), batch, prefetch.

    Args:
        dataset: elements are uint8 images `[H, W, C]` or `(image, label)` pairs, as `ImageData.dataset`.
        batch_size: number of images per batch.
        training: if True, shuffle (reshuffled each epoch) and repeat forever; if False, one pass in order.
        shuffle_buffer: number of elements in the shuffle buffer (training only).
        cache: True caches the (label-free) elements in memory after the first pass, a string caches them in files
            with that prefix, False does not cache. Use False for datasets larger than memory.
        seed: shuffle seed, for reproducible order; None draws one.
        drop_remainder: drop the last partial batch. None means True when training (every batch has the static shape
            `[batch_size, H, W, C]`) and False otherwise (every image is evaluated).
        with_labels: keep `(image, label)` pairs; the dataset must have them.

    Returns:
        `tf.data.Dataset` of uint8 tensors `[B, H, W, C]` (or `(images, labels)` pairs when `with_labels`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    has_labels = isinstance(dataset.element_spec, tuple)
    if with_labels and not has_labels:
        raise ValueError("with_labels=True, but the dataset has no labels: load it with load_images(..., "
                         "with_labels=True).")
    if has_labels and not with_labels:
        dataset = dataset.map(lambda image, label: image, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        dataset = dataset.cache(cache if isinstance(cache, str) else "")
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    if drop_remainder is None:
        drop_remainder = training
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def center_crop_and_resize(image: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    """Crops an image centrally to the aspect ratio of `size` and resizes it to `size`.

    Args:
        image: uint8 tensor `[h, w, C]` of any height and width.
        size: `(H, W)` wanted.

    Returns:
        uint8 tensor `[H, W, C]`. The crop is the largest central window with aspect ratio `H:W`; it is resized
        (bilinear, antialiased when shrinking) only if its size differs from `(H, W)`.
    """
    target_h, target_w = int(size[0]), int(size[1])
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    crop_h = tf.maximum(tf.minimum(h, w * target_h // target_w), 1)
    crop_w = tf.maximum(tf.minimum(w, h * target_w // target_h), 1)
    image = tf.image.crop_to_bounding_box(image, (h - crop_h) // 2, (w - crop_w) // 2, crop_h, crop_w)

    def resize():
        resized = tf.image.resize(image, (target_h, target_w), method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    same_size = tf.logical_and(tf.equal(crop_h, target_h), tf.equal(crop_w, target_w))
    image = tf.cond(same_size, lambda: tf.cast(image, tf.uint8), resize)
    return tf.ensure_shape(image, (target_h, target_w, image.shape[-1]))


def read_idx(path: str) -> np.ndarray:
    """Reads a gzipped idx file of unsigned bytes (the MNIST / Fashion-MNIST format).

    The format: two zero bytes, a type byte (0x08 = unsigned byte), a byte with the number of dimensions, one
    big-endian uint32 per dimension, then the data in row-major order.

    Args:
        path: path of an `*-idx?-ubyte.gz` file.

    Returns:
        uint8 array with the dimensions named in the file's header.

    Raises:
        ValueError: the file is not gzip, not an unsigned-byte idx file, or its size disagrees with its header.
    """

    def corrupt(reason):
        return ValueError(f"{path} is corrupt or not an idx file: {reason}. If it comes from Debian, reinstall it "
                          "with `apt-get install --reinstall dataset-fashion-mnist`.")

    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError.
        raise corrupt(f"cannot decompress it ({e})") from e
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != _IDX_UBYTE:
        raise corrupt(f"bad magic number {raw[:4].hex() or '(empty)'}, expected 000008xx")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header_size:
        raise corrupt(f"header of {ndim} dimensions is missing or truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header_size != expected:
        raise corrupt(f"header says {dims} = {expected} bytes of data, found {len(raw) - header_size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def _builder(name: str, data_dir: Optional[str]) -> tfds.core.DatasetBuilder:
    """Returns the tfds builder of `name`, with a clear error for unknown names; reads only local files."""
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        base_name = name.split(":")[0].split("/")[0]
        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(base_name, known, n=3)
        hint = f"Did you mean {', '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"Unknown dataset {name!r}: tensorflow-datasets has no such dataset (or config). {hint}"
                         "Valid names are those of tfds.list_builders(), e.g. 'fashion_mnist', 'mnist', 'cifar10', "
                         "'imagenet_resized/32x32'.") from e
    except AssertionError as e:  # tfds' way of refusing a version it has not ("... only: 3.0.1")
        message = " ".join(str(e).split())
        found = re.search(r"Dataset (\S+) cannot be loaded at version (\S+), only: (.*?)\.?$", message)
        if not found:
            raise ValueError(f"Dataset {name!r} cannot be loaded by tensorflow-datasets: {message}") from e
        dataset, version, versions = found.groups()
        raise ValueError(f"Dataset {name!r}: tensorflow-datasets has {dataset} at version {versions} only, not "
                         f"{version}; name one of those, or no version for the latest ({dataset!r}).") from e


def _is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    """Whether tfds has prepared the dataset locally (`is_prepared`, but silent when its folder does not exist)."""
    return builder.data_path.exists() and builder.is_prepared()


def _fashion_mnist_dir(directory: Optional[str]) -> Optional[str]:
    """Returns the directory of the four Fashion-MNIST idx files if they are all there, else None."""
    directory = directory or os.environ.get(FASHION_MNIST_DIR_ENV) or DEBIAN_FASHION_MNIST_DIR
    paths = [_idx_path(directory, split, kind) for split in _FASHION_MNIST_FILES for kind in ("images", "labels")]
    present = [os.path.isfile(p) for p in paths]
    if all(present):
        return directory
    if any(present):
        logging.warning("Ignoring %s: it lacks %s.", directory, [p for p, ok in zip(paths, present) if not ok])
    return None


def _idx_path(directory: str, split: str, kind: str) -> str:
    suffix = "images-idx3-ubyte.gz" if kind == "images" else "labels-idx1-ubyte.gz"
    return os.path.join(directory, f"{_FASHION_MNIST_FILES[split]}-{suffix}")


def _load_fashion_mnist_idx(directory: str, split: str, with_labels: bool) -> ImageData:
    """Reads Fashion-MNIST from idx files, applying tfds' split syntax with tfds' own parser."""
    labels = {s: read_idx(_idx_path(directory, s, "labels")) for s in _FASHION_MNIST_FILES}
    for s, y in labels.items():
        if y.ndim != 1 or (y.size and y.max() >= _FASHION_MNIST_CLASSES):
            raise ValueError(f"{_idx_path(directory, s, 'labels')} is corrupt: expected a vector of labels 0..9, got "
                             f"shape {y.shape} with maximum {y.max() if y.size else None}.")
    split_infos = {s: tfds.core.SplitInfo(name=s, shard_lengths=[len(y)], num_bytes=0) for s, y in labels.items()}
    instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(split_infos)

    image_parts, label_parts = [], []
    images = {}
    for instruction in instructions:
        s = instruction.splitname
        if s not in images:
            images[s] = read_idx(_idx_path(directory, s, "images"))
            if images[s].shape != (len(labels[s]),) + _FASHION_MNIST_SHAPE[:2]:
                raise ValueError(f"{_idx_path(directory, s, 'images')} is corrupt: expected shape "
                                 f"{(len(labels[s]),) + _FASHION_MNIST_SHAPE[:2]} to match its labels file, got "
                                 f"{images[s].shape}.")
        image_parts.append(images[s][instruction.from_:instruction.to])
        label_parts.append(labels[s][instruction.from_:instruction.to])
    x = np.concatenate(image_parts)[..., np.newaxis]
    y = np.concatenate(label_parts).astype(np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((x, y) if with_labels else x)
    return ImageData(dataset, _FASHION_MNIST_SHAPE, len(x), _FASHION_MNIST_CLASSES, f"debian:{directory}")


def _download_and_prepare(builder, name: str, base_name: str, download: bool) -> None:
    """Lets tfds download and prepare the dataset, turning any failure into one clear error."""
    how = _HOW_TO_GET_DATA + (_HOW_TO_GET_FASHION_MNIST if base_name == "fashion_mnist" else "") + "."
    if not download:
        raise DatasetUnavailableError(f"No local copy of dataset {name!r} (tfds has not prepared it in {builder.data_dir}) and "
                           f"download=False. {how}")
    unreachable = _unreachable_host(builder)
    if unreachable:
        raise DatasetUnavailableError(f"No local copy of dataset {name!r} (tfds has not prepared it in "
                                      f"{builder.data_dir}) and it cannot be downloaded: {unreachable}. {how}")
    logging.info("Downloading and preparing %s into %s with tensorflow-datasets.", name, builder.data_dir)
    try:
        builder.download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except  (network, checksums, ...: all need the hint)
        raise DatasetUnavailableError(f"Could not download and prepare dataset {name!r} into {builder.data_dir}: "
                           f"{type(e).__name__}: {e}. {how}") from e


# Seconds one connection to a download host may take before the machine counts as offline.
NETWORK_TIMEOUT_S = 5.0


# tfds' own method: a replaced one (`tfds.testing.mock_data`) downloads nothing, so there is nothing to check.
_TFDS_DOWNLOAD_AND_PREPARE = inspect.getattr_static(tfds.core.DatasetBuilder, "download_and_prepare")


def _unreachable_host(builder) -> Optional[str]:
    """Why the first host that `builder` downloads from cannot be reached (None when every host answers, when
    the builder names no URLs, or behind a proxy, which tfds' downloader uses and this check does not)."""
    if inspect.getattr_static(type(builder), "download_and_prepare") is not _TFDS_DOWNLOAD_AND_PREPARE:
        return None
    try:
        urls = list(builder.url_infos or ())
    except Exception:  # pylint: disable=broad-except  (no checksums file: let tfds try)
        return None
    hosts = {}
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname and parts.scheme in ("http", "https"):
            hosts.setdefault((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), parts.scheme)
    if any(scheme in urllib.request.getproxies() for scheme in hosts.values()):
        return None
    for (host, port) in sorted(hosts):
        try:
            socket.create_connection((host, port), timeout=NETWORK_TIMEOUT_S).close()
        except OSError as e:
            return f"{host}:{port} is unreachable ({type(e).__name__}: {e}; is this machine offline?)"
    return None


def _load_tfds(builder, name: str, split: str, with_labels: bool, shuffle_files: bool) -> ImageData:
    """Reads a split that tfds has prepared (or that `tfds.testing.mock_data` fakes)."""
    features = builder.info.features
    if "image" not in features:
        raise ValueError(f"Dataset {name!r} has no 'image' feature (features: {list(features.keys())}).")
    has_labels = "label" in features
    if with_labels and not has_labels:
        raise ValueError(f"with_labels=True, but dataset {name!r} has no 'label' feature.")
    num_classes = getattr(features["label"], "num_classes", None) if has_labels else None

    dataset = builder.as_dataset(split=split, shuffle_files=shuffle_files)
    num_examples = int(dataset.cardinality())
    if num_examples < 0:  # Unknown or infinite: tfds normally knows it.
        num_examples = None
    if with_labels:
        dataset = dataset.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int64)),
                              num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(lambda ex: ex["image"], num_parallel_calls=tf.data.AUTOTUNE)
    shape = tuple(features["image"].shape)
    return ImageData(dataset, shape, num_examples, num_classes, "tfds")


def _fit_to_shape(data: ImageData, name: str, image_shape, with_labels: bool) -> ImageData:
    """Checks the images' shape against `image_shape`, cropping and resizing them where it differs."""
    native = tuple(data.image_shape)
    if image_shape is None:
        if None in native:
            raise ValueError(f"Images of dataset {name!r} have no fixed shape ({native}): pass image_shape=(H, W, C).")
        return data
    target = tuple(int(d) for d in image_shape)
    if len(target) != 3 or target[-1] not in (1, 3) or min(target) < 1:
        raise ValueError(f"image_shape must be (H, W, C) with C in {{1, 3}}, got {tuple(image_shape)}.")
    if native[-1] is not None and native[-1] != target[-1]:
        raise ValueError(f"Dataset {name!r} has {native[-1]}-channel images {native}, but image_shape {target} asks "
                         f"for {target[-1]} channels.")
    if native == target:
        return data
    logging.info("Cropping and resizing images of %s from %s to %s.", name, native, target)

    def fit(image):
        image = tf.ensure_shape(image, (None, None, target[-1]))
        return center_crop_and_resize(image, target[:2])

    if with_labels:
        dataset = data.dataset.map(lambda image, label: (fit(image), label), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = data.dataset.map(fit, num_parallel_calls=tf.data.AUTOTUNE)
    return dataclasses.replace(data, dataset=dataset, image_shape=target)

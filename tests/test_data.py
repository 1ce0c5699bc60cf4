"""Tests of imagetransformer.data: tfds (mocked), Debian's Fashion-MNIST idx files, and the batching pipeline.

Nothing here touches the network: tfds datasets are mocked with `tfds.testing.mock_data`, every load passes an empty
`data_dir` (so no prepared tfds copy is used by accident) and `download=False` wherever a download could start.
"""

import gzip
import os
import socket
import struct

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from imagetransformer import data
from imagetransformer.data import pipeline

DEBIAN_DIR = data.DEBIAN_FASHION_MNIST_DIR
needs_debian = pytest.mark.skipif(
    not os.path.isfile(os.path.join(DEBIAN_DIR, "t10k-labels-idx1-ubyte.gz")),
    reason="Debian package dataset-fashion-mnist is not installed")


def write_idx(path, array):
    """Writes a gzipped unsigned-byte idx file."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def tiny_images(n, offset):
    """n images 28x28; image i has value offset + i everywhere except pixel (0, 1), which is 255."""
    images = np.repeat((offset + np.arange(n, dtype=np.uint8))[:, None, None], 28 * 28, axis=1).reshape(n, 28, 28)
    images[:, 0, 1] = 255
    return images


@pytest.fixture
def tiny_dir(tmp_path):
    """A directory laid out like Debian's, with 5 train and 3 test images of known values."""
    directory = tmp_path / "fashion"
    directory.mkdir()
    write_idx(directory / "train-images-idx3-ubyte.gz", tiny_images(5, 10))
    write_idx(directory / "train-labels-idx1-ubyte.gz", [0, 1, 2, 3, 4])
    write_idx(directory / "t10k-images-idx3-ubyte.gz", tiny_images(3, 100))
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", [7, 8, 9])
    return directory


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    """An empty tfds data_dir, and no Fashion-MNIST directory set in the environment."""
    monkeypatch.delenv(data.FASHION_MNIST_DIR_ENV, raising=False)
    return str(tmp_path / "tfds")


def as_arrays(dataset):
    """All elements of a small dataset as numpy arrays (pairs become a tuple of two arrays)."""
    elements = list(dataset.as_numpy_iterator())
    if elements and isinstance(elements[0], tuple):
        return tuple(np.stack(part) for part in zip(*elements))
    return np.stack(elements)


# Debian's Fashion-MNIST files.


@needs_debian
def test_debian_fashion_mnist_shapes_and_counts(empty_data_dir):
    for split, count in [("train", 60000), ("test", 10000)]:
        loaded = data.load_images("fashion_mnist", split, data_dir=empty_data_dir, download=False)
        assert loaded.source == f"debian:{DEBIAN_DIR}"
        assert loaded.image_shape == (28, 28, 1)
        assert loaded.num_examples == count
        assert loaded.num_classes == 10
        assert int(loaded.dataset.cardinality()) == count
        assert loaded.dataset.element_spec == tf.TensorSpec((28, 28, 1), tf.uint8)


@needs_debian
def test_debian_fashion_mnist_pixels_and_labels(empty_data_dir):
    loaded = data.load_images("fashion_mnist", "train", data_dir=empty_data_dir, with_labels=True, download=False)
    batches = data.make_pipeline(loaded.dataset, 20000, training=False, cache=False, with_labels=True)
    images, labels = zip(*batches.as_numpy_iterator())
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
    assert 70 < images.mean() < 76  # Fashion-MNIST's train mean is 72.94.
    assert images.min() == 0 and images.max() == 255
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels), [6000] * 10)  # Balanced classes 0..9.


@needs_debian
def test_debian_fashion_mnist_slices(empty_data_dir):
    head = data.load_images("fashion_mnist", "test[:16]", data_dir=empty_data_dir, download=False)
    assert head.num_examples == 16
    head_images = as_arrays(head.dataset)
    assert head_images.shape == (16, 28, 28, 1)
    whole = data.load_images("fashion_mnist", "test", data_dir=empty_data_dir, download=False)
    np.testing.assert_array_equal(head_images, as_arrays(whole.dataset.take(16)))
    tenth = data.load_images("fashion_mnist", "test[:10%]", data_dir=empty_data_dir, download=False)
    assert tenth.num_examples == 1000


# The idx reader and the split syntax, on small files of known content.


def test_idx_files_read_exactly_with_split_syntax(tiny_dir, empty_data_dir):
    loaded = data.load_images("fashion_mnist", "train[1:3]+test[-1:]", data_dir=empty_data_dir,
                              fashion_mnist_dir=str(tiny_dir), with_labels=True)
    assert loaded.source == f"debian:{tiny_dir}"
    assert loaded.num_examples == 3
    images, labels = as_arrays(loaded.dataset)
    np.testing.assert_array_equal(images[..., 0], np.concatenate([tiny_images(5, 10)[1:3], tiny_images(3, 100)[2:]]))
    np.testing.assert_array_equal(labels, [1, 2, 9])
    percent = data.load_images("fashion_mnist", "train[:40%]", data_dir=empty_data_dir,
                               fashion_mnist_dir=str(tiny_dir))
    assert percent.num_examples == 2
    np.testing.assert_array_equal(as_arrays(percent.dataset)[:, 0, 0, 0], [10, 11])


def test_fashion_mnist_dir_from_environment_and_argument(tiny_dir, empty_data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(data.FASHION_MNIST_DIR_ENV, str(tiny_dir))
    assert data.load_images("fashion_mnist", "test", data_dir=empty_data_dir).num_examples == 3
    monkeypatch.setenv(data.FASHION_MNIST_DIR_ENV, str(tmp_path / "nothing here"))
    loaded = data.load_images("fashion_mnist", "test", data_dir=empty_data_dir, fashion_mnist_dir=str(tiny_dir))
    assert loaded.num_examples == 3


def test_unknown_split_is_a_clear_error(tiny_dir, empty_data_dir):
    with pytest.raises(ValueError, match="validation"):
        data.load_images("fashion_mnist", "validation", data_dir=empty_data_dir, fashion_mnist_dir=str(tiny_dir))
    with pytest.raises(ValueError, match="incompatible with 3 examples"):
        data.load_images("fashion_mnist", "test[:4]", data_dir=empty_data_dir, fashion_mnist_dir=str(tiny_dir))


def _truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])


def _bad_magic(path):
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x0D, 3]) + struct.pack(">3I", 5, 28, 28) + bytes(5 * 28 * 28 * 4))


def _short_data(path):
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 6, 28, 28) + bytes(5 * 28 * 28))


def _count_mismatch(path):
    write_idx(path, tiny_images(4, 0))


def _not_gzip(path):
    path.write_bytes(b"this is not a gzip file")


@pytest.mark.parametrize("corrupt, reason", [
    (_truncate, "cannot decompress"),
    (_bad_magic, "bad magic number 00000d03"),
    (_short_data, "header says"),
    (_count_mismatch, "to match its labels"),
    (_not_gzip, "cannot decompress"),
])
def test_corrupt_idx_file_is_a_clear_error(tiny_dir, empty_data_dir, corrupt, reason):
    corrupt(tiny_dir / "train-images-idx3-ubyte.gz")
    with pytest.raises(ValueError, match=reason) as error:
        data.load_images("fashion_mnist", "train", data_dir=empty_data_dir, fashion_mnist_dir=str(tiny_dir))
    assert "train-images-idx3-ubyte.gz" in str(error.value)
    assert "corrupt" in str(error.value)


def test_label_out_of_range_is_a_clear_error(tiny_dir, empty_data_dir):
    write_idx(tiny_dir / "t10k-labels-idx1-ubyte.gz", [7, 8, 12])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz is corrupt"):
        data.load_images("fashion_mnist", "test", data_dir=empty_data_dir, fashion_mnist_dir=str(tiny_dir))


def test_no_data_anywhere_says_how_to_get_it(empty_data_dir, tmp_path):
    with pytest.raises(RuntimeError, match="apt-get install dataset-fashion-mnist"):
        data.load_images("fashion_mnist", "train", data_dir=empty_data_dir, fashion_mnist_dir=str(tmp_path / "none"),
                         download=False)


def test_incomplete_fashion_mnist_dir_is_not_used(tiny_dir, empty_data_dir):
    (tiny_dir / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(RuntimeError, match="No local copy"):
        data.load_images("fashion_mnist", "train", data_dir=empty_data_dir, fashion_mnist_dir=str(tiny_dir),
                         download=False)


def test_fashion_mnist_image_shape(tiny_dir, empty_data_dir):
    loaded = data.load_images("fashion_mnist", "train", data_dir=empty_data_dir, fashion_mnist_dir=str(tiny_dir),
                              image_shape=(14, 14, 1))
    assert loaded.image_shape == (14, 14, 1)
    images = as_arrays(loaded.dataset)
    assert images.shape == (5, 14, 14, 1) and images.dtype == np.uint8
    assert images[3, 7, 7, 0] == 13  # Constant regions keep their value.
    with pytest.raises(ValueError, match=r"1-channel.*\(28, 28, 3\).*3 channels"):
        data.load_images("fashion_mnist", "train", data_dir=empty_data_dir, fashion_mnist_dir=str(tiny_dir),
                         image_shape=(28, 28, 3))


# tfds datasets, mocked.


def test_mocked_cifar10(empty_data_dir):
    with tfds.testing.mock_data(num_examples=6):
        loaded = data.load_images("cifar10", "train", data_dir=empty_data_dir, with_labels=True)
        assert loaded.source == "tfds"
        assert loaded.image_shape == (32, 32, 3)
        assert loaded.num_examples == 6
        assert loaded.num_classes == 10
        images, labels = as_arrays(loaded.dataset)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and np.all((labels >= 0) & (labels < 10))
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(ValueError, match=r"3-channel.*1 channels"):
            data.load_images("cifar10", "train", data_dir=empty_data_dir, image_shape=(32, 32, 1))


def test_mocked_images_of_odd_sizes_are_cropped_and_resized(empty_data_dir):
    with tfds.testing.mock_data(num_examples=5):
        raw = tfds.load("tf_flowers", split="train", data_dir=empty_data_dir)
        raw_shapes = {tuple(example["image"].shape) for example in raw}
        assert len(raw_shapes) > 1  # tf_flowers has no fixed shape: the mock makes odd sizes.
        with pytest.raises(ValueError, match="no fixed shape"):
            data.load_images("tf_flowers", "train", data_dir=empty_data_dir)
        loaded = data.load_images("tf_flowers", "train", data_dir=empty_data_dir, image_shape=(16, 24, 3))
        assert loaded.image_shape == (16, 24, 3)
        assert loaded.dataset.element_spec == tf.TensorSpec((16, 24, 3), tf.uint8)
        images = as_arrays(loaded.dataset)
    assert images.shape == (5, 16, 24, 3) and images.dtype == np.uint8


def test_prepared_tfds_copy_is_preferred_to_debian_files(tiny_dir, tmp_path, monkeypatch):
    # A data_dir where tfds "has prepared" fashion_mnist: the folder exists and is_prepared() says so.
    (tmp_path / "prepared" / "fashion_mnist" / "3.0.1").mkdir(parents=True)
    with tfds.testing.mock_data(num_examples=7, data_dir=str(tmp_path / "prepared")):
        unprepared = data.load_images("fashion_mnist", "train", fashion_mnist_dir=str(tiny_dir))
        assert unprepared.source.startswith("debian:") and unprepared.num_examples == 5
        monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
        prepared = data.load_images("fashion_mnist", "train", fashion_mnist_dir=str(tiny_dir))
        assert prepared.source == "tfds" and prepared.num_examples == 7
        assert prepared.image_shape == (28, 28, 1)


def test_unknown_dataset_names_it_and_suggests(empty_data_dir):
    with pytest.raises(ValueError, match=r"Unknown dataset 'fashion_mnistt'.*'fashion_mnist'"):
        data.load_images("fashion_mnistt", "train", data_dir=empty_data_dir)


def test_dataset_aliases_and_versions(empty_data_dir):
    # tfds' aliases of fashion_mnist read the same offline files; a version tfds has not is one clear error.
    for alias in ("Fashion_MNIST", "FashionMNIST", "fashion_mnist:3.*.*"):
        loaded = data.load_images(alias, "test[:4]", data_dir=empty_data_dir, download=False)
        assert loaded.num_examples == 4 and loaded.source.startswith("debian:")
    with pytest.raises(ValueError, match=r"'fashion_mnist:99.0.0'.*at version 3.0.1 only, not 99.0.0"):
        data.load_images("fashion_mnist:99.0.0", "test", data_dir=empty_data_dir, download=False)


def test_tfds_dataset_without_local_copy_and_no_download(empty_data_dir):
    with pytest.raises(RuntimeError, match=r"No local copy of dataset 'mnist'.*data_dir"):
        data.load_images("mnist", "train", data_dir=empty_data_dir, download=False)


def test_offline_download_fails_at_once_naming_the_host(empty_data_dir, monkeypatch):
    # An offline machine: every connection fails. The error comes before tfds starts its minutes of retries.
    probed = []

    def offline(address, timeout=None):
        probed.append((address, timeout))
        raise OSError("[Errno -2] Name or service not known")

    def download(self, *args, **kwargs):
        raise ConnectionError("tfds' downloader ran")

    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(socket, "create_connection", offline)
    for method in ("download", "download_and_extract"):
        monkeypatch.setattr(tfds.download.DownloadManager, method, download)
    with pytest.raises(data.DatasetUnavailableError,
                       match=r"'mnist'.*cannot be downloaded: storage.googleapis.com:443 is unreachable.*offline"):
        data.load_images("mnist", "train", data_dir=empty_data_dir)
    assert probed == [(("storage.googleapis.com", 443), pipeline.NETWORK_TIMEOUT_S)]
    # Behind a proxy the direct connection says nothing: tfds' downloader (which uses the proxy) is left to try.
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    with pytest.raises(data.DatasetUnavailableError, match=r"Could not download.*tfds' downloader ran"):
        data.load_images("mnist", "train", data_dir=empty_data_dir)


# Cropping and resizing.


def test_center_crop_takes_the_middle():
    image = tf.constant(np.arange(8, dtype=np.uint8)[None, :, None].repeat(4, axis=0))  # [4, 8, 1], value = column
    cropped = data.center_crop_and_resize(image, (4, 4)).numpy()
    np.testing.assert_array_equal(cropped[0, :, 0], [2, 3, 4, 5])
    tall = data.center_crop_and_resize(tf.transpose(image, (1, 0, 2)), (4, 4)).numpy()
    np.testing.assert_array_equal(tall[:, 0, 0], [2, 3, 4, 5])


def test_resize_keeps_uint8_and_constant_values():
    image = tf.fill((30, 17, 3), tf.constant(200, tf.uint8))
    resized = data.center_crop_and_resize(image, (8, 8))
    assert resized.dtype == tf.uint8 and resized.shape == (8, 8, 3)
    assert np.all(resized.numpy() == 200)
    grown = data.center_crop_and_resize(tf.constant([[[0], [255]]], tf.uint8), (4, 8))
    assert grown.shape == (4, 8, 1)
    assert grown.numpy().min() == 0 and grown.numpy().max() == 255


# The pipeline.


def numbered_images(n):
    """n images [2, 2, 1]; image i is filled with i."""
    return tf.data.Dataset.range(n).map(lambda i: tf.fill((2, 2, 1), tf.cast(i, tf.uint8)))


def test_eval_pipeline_batches_in_order_and_ends():
    batches = list(data.make_pipeline(numbered_images(10), 4, training=False).as_numpy_iterator())
    assert [b.shape for b in batches] == [(4, 2, 2, 1), (4, 2, 2, 1), (2, 2, 2, 1)]
    assert all(b.dtype == np.uint8 for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches)[:, 0, 0, 0], np.arange(10))
    dropped = list(data.make_pipeline(numbered_images(10), 4, training=False, drop_remainder=True))
    assert len(dropped) == 2


def test_training_pipeline_shuffles_repeats_and_has_static_batches():
    pipeline = data.make_pipeline(numbered_images(10), 4, training=True, seed=1)
    assert pipeline.element_spec == tf.TensorSpec((4, 2, 2, 1), tf.uint8)
    values = np.concatenate([b[:, 0, 0, 0] for b in pipeline.take(10).as_numpy_iterator()])  # 40 > 10 images.
    assert len(values) == 40
    np.testing.assert_array_equal(np.sort(values[:10]), np.arange(10))  # Each epoch holds every image once.
    np.testing.assert_array_equal(np.sort(values[10:20]), np.arange(10))
    assert not np.array_equal(values[:10], np.arange(10))  # Shuffled.
    assert not np.array_equal(values[:10], values[10:20])  # Reshuffled each epoch.
    again = data.make_pipeline(numbered_images(10), 4, training=True, seed=1)
    np.testing.assert_array_equal(next(iter(again)).numpy()[:, 0, 0, 0], values[:4])  # Same seed, same order.


def test_pipeline_drops_or_keeps_labels():
    pairs = tf.data.Dataset.zip((numbered_images(6), tf.data.Dataset.range(6)))
    images_only = data.make_pipeline(pairs, 3, training=False)
    assert images_only.element_spec == tf.TensorSpec((None, 2, 2, 1), tf.uint8)
    images, labels = next(iter(data.make_pipeline(pairs, 3, training=False, with_labels=True)))
    np.testing.assert_array_equal(labels.numpy(), [0, 1, 2])
    np.testing.assert_array_equal(images.numpy()[:, 0, 0, 0], [0, 1, 2])
    with pytest.raises(ValueError, match="no labels"):
        data.make_pipeline(numbered_images(6), 3, training=False, with_labels=True)

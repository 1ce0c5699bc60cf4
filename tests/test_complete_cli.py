"""`python -m imagetransformer.complete`: PNG grids of completions and samples, and one-line errors."""

import os

import numpy as np
import pytest
from PIL import Image

import imagetransformer as it
from imagetransformer import models
from imagetransformer.training import checkpoints
from imagetransformer.programs import complete as complete_cli
from imagetransformer import data as data_lib

needs_fashion_mnist = pytest.mark.skipif(
    not os.path.exists(os.path.join(data_lib.DEBIAN_FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz")),
    reason="Debian package dataset-fashion-mnist is not installed")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("model"))
    model = it.ImageTransformer(image_shape=(28, 28, 1), attention="local_2d", num_layers=1, hidden_size=16,
                                num_heads=2, filter_size=16, query_shape=(7, 14), memory_flange=(7, 7),
                                num_mixtures=2)
    checkpoints.save_config(directory, models.config_of(model), data={"dataset": "fashion_mnist"})
    checkpoints.save_weights(model, directory)
    return directory


@needs_fashion_mnist
def test_completion_grid_shows_given_completion_and_original(model_dir, tmp_path):
    output = os.path.join(tmp_path, "grid.png")
    completed = complete_cli.run(model_dir, output, num_images=2, seed=1, scale=1, progress=False)
    originals = np.stack(list(data_lib.load_images("fashion_mnist", "test[:2]").dataset.as_numpy_iterator()))
    # Default known rows: half of 28, a multiple of the query height 7.
    np.testing.assert_array_equal(completed[:, :14], originals[:, :14])
    grid = np.asarray(Image.open(output))
    assert grid.shape == (2 * 30 + 2, 3 * 30 + 2)  # 2 rows x 3 tiles of 28 px, 2 px padding
    np.testing.assert_array_equal(grid[2:30, 32:60], completed[0, :, :, 0])  # the middle tile is the completion
    np.testing.assert_array_equal(grid[2:30, 62:90], originals[0, :, :, 0])


def test_unconditional_grid(model_dir, tmp_path):
    output = os.path.join(tmp_path, "samples.png")
    samples = complete_cli.run(model_dir, output, num_images=4, unconditional=True, scale=2, progress=False)
    assert samples.shape == (4, 28, 28, 1) and samples.dtype == np.uint8
    assert np.asarray(Image.open(output)).shape == (2 * 58 + 2, 2 * 58 + 2)


@pytest.mark.parametrize("flags,expected", [
    (["--known_rows=3"], "known_rows=3 must be a multiple of the query block height 7"),
    (["--temperature=0"], "--temperature=0.0 must be a finite number > 0"),
    (["--output=grid.jpg"], "--output=grid.jpg must name a .png file"),
])
def test_bad_flags_give_one_line(model_dir, tmp_path, flags, expected, run_program):
    # In this process (one-line errors of real processes: test_train.py's process test).
    result = run_program("complete", f"--model_dir={model_dir}", *flags, cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr

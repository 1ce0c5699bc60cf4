"""What the benchmark scripts share: the repository on `sys.path` (they run as `python bench/<name>.py`), quiet
TensorFlow logs (`run_main`), median timing after a warm-up, and the paper's CIFAR-10 model from the named
configuration.

Import it first: `import common` (the script's own folder is on `sys.path`).
"""

import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_main(main):
    """`absl.app.run(main)`, with absl's INFO logs (TensorFlow's Python logging: every export writes a dozen lines)
    shown only with `--verbosity=0`, as the project's programs do: the terminal shows the script's results."""
    from absl import app  # pylint: disable=import-outside-toplevel

    from imagetransformer.programs import cli  # pylint: disable=import-outside-toplevel

    def quiet_main(argv):
        cli.default_to_warnings()
        return main(argv)

    app.run(quiet_main)


def median_time(fn, repeats):
    """Median wall time in seconds of `repeats` calls of `fn`, after one warm-up call (tracing, compilation)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paper_model_kwargs(config="cifar10_local_1d", **overrides):
    """`ImageTransformer` arguments of a named configuration (default: the paper's CIFAR-10 local 1D model)."""
    from imagetransformer.training import configs  # pylint: disable=import-outside-toplevel

    model = configs.get_config(config).model.kwargs("generation")
    model["image_shape"] = (32, 32, 3)
    model.update(overrides)
    return model

"""Equal-budget likelihood study: Image Transformer (local 1D, local 2D) against PixelCNN++ on Fashion-MNIST.

```
PYTHONPATH=. .venv/bin/python bench/likelihood_study.py --minutes=40 --out=runs/study \
    --models=local_1d,local_1d_seed1,local_2d,pixelcnnpp --plot=docs/likelihood_curves.png   # real data, ~1 hour
PYTHONPATH=. .venv/bin/python bench/likelihood_study.py --mock_cifar10 --minutes=3 --out=runs/study_cifar10
PYTHONPATH=. .venv/bin/python bench/likelihood_study.py --models=local_1d,local_1d_class --minutes=20 \
    --out=runs/study_class --prefix=study_class   # class-conditional vs unconditional at equal budget
PYTHONPATH=. .venv/bin/python bench/likelihood_study.py --models=super_resolution --minutes=25 --noconcurrent \
    --out=runs/study_sr                           # 7x7 -> 28x28 super-resolution: bits/dim, PSNR/SSIM vs bicubic
```
Each model trains with `python -m imagetransformer.train` (same data, batch, learning-rate schedule, clipping and
validation) for the same wall-clock budget (`--train_minutes`). With `--concurrent` (default) the runs train at the
same time, each pinned to `--threads` CPU threads, so that whatever else the machine does slows all of them
alike. Then each is evaluated on the whole test split (bits/dim), and a completion grid (top half given; rows:
original | completion) is written to `--docs/<--prefix>_<name>.png`.

Prints one JSON line per model (`name`, `parameters`, `steps`, `images_per_second` in training,
`test_bits_per_dim`, `test_images`) and writes them to `--out/results.json`.

`--mock_cifar10` instead trains each model in this process on `tfds.testing.mock_data` CIFAR-10 (random 32x32 RGB
images, no download) at the paper's CIFAR-10 sizes for a few minutes: it shows the RGB path (three channels,
coupled mixture coefficients) trains, evaluates, completes and exports end to end; its bits/dim mean nothing.
"""

import json
import os
import re
import subprocess
import sys
import time

from absl import app
from absl import flags

# Fashion-MNIST: the project's default small model (167k parameters) and PixelCNN++ of about its size (186k).
STUDY = {
    "local_1d": ["--config=fashion_mnist_small"],
    "local_1d_seed1": ["--config=fashion_mnist_small", "--seed=1"],
    "local_2d": ["--config=fashion_mnist_local_2d"],
    "pixelcnnpp": ["--config=fashion_mnist_pixelcnnpp"],
    # The same local 1D model, class-conditional (evaluated given each test image's class).
    "local_1d_class": ["--config=fashion_mnist_small", "--conditional=class"],
    # 7x7 -> 28x28 super-resolution (bits/dim of the image given its low-resolution version; PSNR/SSIM).
    "super_resolution": ["--config=fashion_mnist_super_resolution"],
}
COMMON = ["--train_steps=10000000", "--steps_per_epoch=200", "--val_examples=256", "--summary_images=0",
          "--verbose=2"]

flags.DEFINE_float("minutes", 45.0, "Training budget per model (wall clock).")
flags.DEFINE_string("out", "runs/study", "Directory for the model directories, logs and results.json.")
flags.DEFINE_string("docs", "docs", "Where the completion grids go.")
flags.DEFINE_string("prefix", "study", "Grid file names: <docs>/<prefix>_<model>.png.")
flags.DEFINE_list("models", ["local_1d", "local_2d", "pixelcnnpp"],
                  f"Models of the study, of: {', '.join(STUDY)}.")
flags.DEFINE_bool("concurrent", True, "Train the models at the same time (each on --threads threads).")
flags.DEFINE_integer("threads", 1, "CPU threads per training process when --concurrent.")
flags.DEFINE_integer("eval_examples", None, "Test images to evaluate (default: the whole test split).")
flags.DEFINE_integer("sr_examples", 100, "Super-resolution models: test images to super-resolve and score.")
flags.DEFINE_string("plot", None, "Also draw validation bits/dim against steps and minutes of every model into this "
                    "PNG (needs matplotlib).")
flags.DEFINE_bool("mock_cifar10", False, "Mocked CIFAR-10 at the paper's sizes instead (the RGB path).")
flags.DEFINE_bool("skip_training", False, "Only evaluate and draw the grids of existing runs in --out.")
flags.DEFINE_float("speed_minutes", 0.0,
                   "Afterwards, train each model alone (all CPU threads, no validation) for this many minutes in "
                   "--out/speed_<name> and report its images/s as images_per_second_alone; 0 skips.")
FLAGS = flags.FLAGS

# Mocked CIFAR-10: the paper-sized configurations; PixelCNN++ at 64 filters and 2 resnets per scale (its naive
# sampler re-runs the network for each of the 512 pixels of the completion grid).
MOCK = {
    "local_1d": ("cifar10_local_1d", {}),
    "local_2d": ("cifar10_local_2d", {}),
    "pixelcnnpp": ("cifar10_pixelcnnpp", {"num_filters": 64, "num_resnets": 2}),
}
_TRAINED = re.compile(r"Trained steps (\d+)\.\.(\d+)(?:, ([\d.]+) steps/s)?")
# Keras' verbose=2 line at each epoch end: "200/200 - 41s - 205ms/step - ... - val_bits_per_dim: 3.5 - ...".
_EPOCH = re.compile(r"^(\d+)/\d+ - (\d+)s - .*val_bits_per_dim: ([\d.]+)", re.M)


def _train_command(name):
    return [sys.executable, "-m", "imagetransformer.train", f"--model_dir={os.path.join(FLAGS.out, name)}",
            f"--train_minutes={FLAGS.minutes}", *STUDY[name], *COMMON]


def _parse_trained(path):
    with open(path) as f:
        match = _TRAINED.findall(f.read())[-1]
    return int(match[1]), float(match[2] or "nan")


def curve(name):
    """Validation bits/dim of a model's training log: `[(step, minutes, bits/dim)]` at each epoch end."""
    with open(os.path.join(FLAGS.out, f"{name}.log")) as f:
        text = f.read()
    points, step, seconds = [], 0, 0
    for steps, epoch_seconds, bits in _EPOCH.findall(text):
        step += int(steps)
        seconds += int(epoch_seconds)
        points.append((step, round(seconds / 60, 2), float(bits)))
    # The epoch that the time budget cut short still prints its full length: it ends at the last trained step.
    trained = _TRAINED.findall(text)
    if points and trained and int(trained[-1][1]) < points[-1][0]:
        points[-1] = (int(trained[-1][1]), *points[-1][1:])
    return points


def plot(path):
    """Validation bits/dim against steps and against minutes of every model of the study, side by side."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4), sharey=True)
    for name in FLAGS.models:
        points = curve(name)
        if not points:
            continue
        steps, minutes, bits = zip(*points)
        axes[0].plot(steps, bits, label=name)
        axes[1].plot(minutes, bits, label=name)
    axes[0].set_xlabel("training steps")
    axes[1].set_xlabel("minutes (all models training at once)")
    axes[0].set_ylabel("validation bits/dim (held-out training images)")
    for axis in axes:
        axis.grid(alpha=0.3)
    low = min(p[2] for name in FLAGS.models for p in curve(name))
    axes[0].set_ylim(low - 0.05, low + 0.8)
    axes[1].legend()
    figure.suptitle("Fashion-MNIST, equal wall-clock budget")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def measure_speed():
    """`{name: images/s}` of each model trained alone for `--speed_minutes` (the machine to itself)."""
    speeds = {}
    for name in FLAGS.models:
        log = os.path.join(FLAGS.out, f"speed_{name}.log")
        command = [sys.executable, "-m", "imagetransformer.train",
                   f"--model_dir={os.path.join(FLAGS.out, 'speed_' + name)}", f"--train_minutes={FLAGS.speed_minutes}",
                   *STUDY[name], *COMMON, "--val_examples=0"]
        with open(log, "w") as f:
            subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, check=True)
        speeds[name] = round(_parse_trained(log)[1] * 16, 2)
    return speeds


def train_all():
    """Runs the training processes; returns `{name: (steps, steps_per_second)}` parsed from their output."""
    env = dict(os.environ)
    if FLAGS.concurrent:
        env.update(TF_NUM_INTRAOP_THREADS=str(FLAGS.threads), TF_NUM_INTEROP_THREADS="1",
                   OMP_NUM_THREADS=str(FLAGS.threads))
    os.makedirs(FLAGS.out, exist_ok=True)
    processes = {}
    for name in FLAGS.models:
        log = open(os.path.join(FLAGS.out, f"{name}.log"), "w")  # pylint: disable=consider-using-with
        command = _train_command(name)
        log.write(" ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        processes[name] = (process, log)
        if not FLAGS.concurrent:
            process.wait()
    results = {}
    for name, (process, log) in processes.items():
        if process.wait():
            raise RuntimeError(f"training {name} failed; see {log.name}")
        log.close()
        results[name] = _parse_trained(log.name)
    return results


def evaluate_all(trained, batch_size, speeds=None):
    # pylint: disable=import-outside-toplevel
    from imagetransformer.evaluation import evaluator
    from imagetransformer.programs import complete as complete_program
    from imagetransformer.programs import super_resolve as super_resolve_program
    from imagetransformer.training import checkpoints

    rows = []
    for name in FLAGS.models:
        model_dir = os.path.join(FLAGS.out, name)
        model = checkpoints.load_model(model_dir)
        start = time.perf_counter()
        result = evaluator.evaluate(model_dir, "test", eval_examples=FLAGS.eval_examples, model=model,
                                   sr_examples=FLAGS.sr_examples)
        eval_seconds = time.perf_counter() - start
        grid = os.path.join(FLAGS.docs, f"{FLAGS.prefix}{'_cifar10' if FLAGS.mock_cifar10 else ''}_{name}.png")
        if not model.condition.completes_top_rows:  # super-resolution; rows: low resolution | bicubic | T=0.8 | T=1.0 | original
            super_resolve_program.run(model_dir, grid, num_images=8, seed=0, progress=False)
        else:
            complete_program.run(model_dir, grid, num_images=8, seed=0, progress=False)
        steps, steps_per_second = trained.get(name, (None, float("nan")))
        row = dict(name=name, model=model.description, parameters=model.count_params(), steps=steps,
                   images_per_second=round(steps_per_second * batch_size, 2),
                   test_bits_per_dim=round(result.bits_per_dim, 4), test_images=result.num_examples,
                   eval_seconds=round(eval_seconds, 1), grid=grid, minutes=FLAGS.minutes,
                   concurrent=FLAGS.concurrent and not FLAGS.mock_cifar10,
                   images_per_second_alone=(speeds or {}).get(name),
                   validation_curve=curve(name) if not FLAGS.mock_cifar10 else None)
        if result.super_resolution:
            row["super_resolution"] = dict(result.super_resolution, images=min(FLAGS.sr_examples, result.num_examples))
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    return rows


def mock_cifar10():
    """Trains, evaluates, completes and exports each model on mocked CIFAR-10; returns `{name: (steps, rate)}`."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    from imagetransformer import export  # pylint: disable=import-outside-toplevel
    from imagetransformer.training import configs, trainer  # pylint: disable=import-outside-toplevel

    trained = {}
    with tfds.testing.mock_data(num_examples=64):
        for name in FLAGS.models:
            config_name, overrides = MOCK[name]
            config = configs.get_config(config_name, batch_size=8, train_steps=10_000_000, steps_per_epoch=20,
                                        val_examples=16, warmup_steps=20, **overrides)
            model_dir = os.path.join(FLAGS.out, name)
            result = trainer.train(config, model_dir, verbose=2, train_minutes=FLAGS.minutes)
            trained[name] = result.final_step, result.steps_per_second or float("nan")
            exported = export.export_model(result.model, os.path.join(FLAGS.out, "exported", name), overwrite=True)
            print(f"{name}: exported {exported.saved_model_dir}", flush=True)
        rows = evaluate_all(trained, 8)
    return rows


def main(argv):
    del argv
    os.makedirs(FLAGS.docs, exist_ok=True)
    if FLAGS.mock_cifar10:
        FLAGS.eval_examples = FLAGS.eval_examples or 64
        mock_cifar10()
        return
    if FLAGS.skip_training:
        trained = {name: _parse_trained(os.path.join(FLAGS.out, f"{name}.log")) for name in FLAGS.models}
    else:
        trained = train_all()
    speeds = measure_speed() if FLAGS.speed_minutes else None
    if FLAGS.plot:
        plot(FLAGS.plot)
    evaluate_all(trained, 16, speeds)


if __name__ == "__main__":
    app.run(main)

"""Screen of training choices: validation bits/dim after a fixed number of steps, same data order and seed.

```
PYTHONPATH=. .venv/bin/python bench/likelihood_screen.py --out=/tmp/screen --screen=levers --steps=1000
PYTHONPATH=. .venv/bin/python bench/likelihood_screen.py --out=/tmp/screen --screen=levers --seeds=0,1 \
    --variants=baseline,head_gain_0.2
PYTHONPATH=. .venv/bin/python bench/likelihood_screen.py --out=/tmp/screen_pixelcnnpp --screen=pixelcnnpp
```
Each variant is a list of `python -m imagetransformer.train` flags on top of `COMMON` (Fashion-MNIST, the held-out
`train[95%:]` validation split, never the test split). Every run of a screen starts from the same seed, so the
models see the same images in the same order; `--parallel` runs train at once, one CPU thread each. Validation
bits/dim on `--val_examples` held-out images is read at every `--every` steps.

Prints one JSON line per run (`variant`, `seed`, `flags`, `val_bits_per_dim` by step, `steps_per_second`,
`parameters`) and appends it to `--out/results.jsonl`; runs already there are skipped, so an interrupted screen
resumes where it stopped when started again with the same command.
"""

import json
import os
import re
import subprocess
import sys
import time

from absl import app
from absl import flags

# Flags of the model of today's default configuration (fashion_mnist_small as of the start of the screen), so
# that the screen stays comparable when the configuration's defaults change.
BASELINE = ["--config=fashion_mnist_small", "--initializer_gain=1.0", "--value_embedding=table", "--start=learned",
            "--conv_stem_layers=0", "--norm=pre", "--max_log_scale=3.0", "--learning_rate=2e-3", "--warmup_steps=100",
            "--lr_decay=rsqrt", "--batch_size=16", "--dropout=0.0"]
T2T_INIT = ["--initializer_gain=0.2"]
OTHER_CHOICES = ["--initializer_gain=0.2", "--value_embedding=projection", "--norm=post", "--start=zeros",
                 "--max_log_scale=inf"]

SCREENS = {
    # One lever at a time against the baseline, then the combinations.
    "levers": {
        "baseline": [],
        "head_gain_0.2": ["--head_initializer_gain=0.2"],
        "gain_0.2": T2T_INIT,
        "norm_post": ["--norm=post"],
        "value_projection": ["--value_embedding=projection"],
        "start_zeros": ["--start=zeros"],
        "no_max_log_scale": ["--max_log_scale=inf"],
        "conv_stem_1": ["--conv_stem_layers=1"],
        "conv_stem_2": ["--conv_stem_layers=2"],
        "other_choices": OTHER_CHOICES,
        "gain_0.2+conv_stem_1": T2T_INIT + ["--conv_stem_layers=1"],
        "other_choices+conv_stem_1": OTHER_CHOICES + ["--conv_stem_layers=1"],
        "dropout_0.1": ["--dropout=0.1"],
        "batch_32": ["--batch_size=32"],
        "lr_1e-3": ["--learning_rate=1e-3"],
        "lr_4e-3": ["--learning_rate=4e-3"],
        "warmup_500": ["--warmup_steps=500"],
        "cosine": ["--lr_decay=cosine"],
    },
    # The same number of optimization trials for PixelCNN++ (the equal-budget study's baseline), from the shared
    # training choices it runs with; its architecture has none of the Image Transformer's levers above.
    "pixelcnnpp": {
        "pixelcnnpp": ["--model=pixelcnnpp"],
        "pixelcnnpp_lr_1e-3": ["--model=pixelcnnpp", "--learning_rate=1e-3"],
        "pixelcnnpp_lr_4e-3": ["--model=pixelcnnpp", "--learning_rate=4e-3"],
        "pixelcnnpp_batch_32": ["--model=pixelcnnpp", "--batch_size=32"],
        "pixelcnnpp_cosine": ["--model=pixelcnnpp", "--lr_decay=cosine"],
        "pixelcnnpp_warmup_500": ["--model=pixelcnnpp", "--warmup_steps=500"],
        "pixelcnnpp_dropout_0.1": ["--model=pixelcnnpp", "--dropout=0.1"],
        "pixelcnnpp_mixtures_10": ["--model=pixelcnnpp", "--num_mixtures=10"],
    },
}

flags.DEFINE_string("out", "runs/screen", "Directory of the runs' model directories, logs and results.jsonl.")
flags.DEFINE_enum("screen", "levers", list(SCREENS), "Which screen.")
flags.DEFINE_list("variants", None, "Only these variants of the screen (default: all).")
flags.DEFINE_list("base", [], "Flags every variant starts from, after BASELINE (e.g. a new default).")
flags.DEFINE_list("seeds", ["0"], "Seeds; each variant runs once per seed.")
flags.DEFINE_integer("steps", 1000, "Training steps per run.")
flags.DEFINE_integer("every", 250, "Validate every this many steps.")
flags.DEFINE_integer("val_examples", 1000, "Held-out training images to validate on.")
flags.DEFINE_integer("parallel", 2, "Runs at a time, one CPU thread each.")
FLAGS = flags.FLAGS

_VAL = re.compile(r"val_bits_per_dim: ([\d.]+)")
_TRAINED = re.compile(r"Trained steps (\d+)\.\.(\d+)(?:, ([\d.]+) steps/s)?")
_PARAMS = re.compile(r"Training ([\d,]+) parameters")


def _done(path):
    if not os.path.exists(path):
        return set()
    with open(path) as f:
        return {(row["variant"], row["seed"]) for row in map(json.loads, f)}


def _command(variant, seed):
    model_dir = os.path.join(FLAGS.out, f"{variant}_seed{seed}")
    return model_dir, [
        sys.executable, "-m", "imagetransformer.train", f"--model_dir={model_dir}", *BASELINE, *FLAGS.base,
        *SCREENS[FLAGS.screen][variant], f"--seed={seed}", f"--train_steps={FLAGS.steps}",
        f"--steps_per_epoch={FLAGS.every}", f"--save_every={FLAGS.every}", f"--val_examples={FLAGS.val_examples}",
        "--summary_images=0", "--verbose=2",
    ]


def _result(variant, seed, log_path, command):
    with open(log_path) as f:
        text = f.read()
    values = [float(v) for v in _VAL.findall(text)]
    trained = _TRAINED.findall(text)
    params = _PARAMS.findall(text)
    return dict(variant=variant, seed=seed, flags=SCREENS[FLAGS.screen][variant], base=FLAGS.base,
                val_bits_per_dim={str(FLAGS.every * (i + 1)): v for i, v in enumerate(values)},
                steps_per_second=float(trained[-1][2]) if trained and trained[-1][2] else None,
                parameters=int(params[0].replace(",", "")) if params else None,
                command=" ".join(command[1:]))


def main(argv):
    del argv
    os.makedirs(FLAGS.out, exist_ok=True)
    results = os.path.join(FLAGS.out, "results.jsonl")
    variants = FLAGS.variants or list(SCREENS[FLAGS.screen])
    unknown = sorted(set(variants) - set(SCREENS[FLAGS.screen]))
    if unknown:
        raise app.UsageError(f"unknown variants {unknown}; the screen has {', '.join(SCREENS[FLAGS.screen])}")
    done = _done(results)
    queue = [(v, int(s)) for s in FLAGS.seeds for v in variants if (v, int(s)) not in done]
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    running = []
    while queue or running:
        while queue and len(running) < FLAGS.parallel:
            variant, seed = queue.pop(0)
            model_dir, command = _command(variant, seed)
            log_path = model_dir + ".log"
            log = open(log_path, "a")  # pylint: disable=consider-using-with
            running.append((variant, seed, log_path, command, log,
                            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)))
        time.sleep(5)
        for item in list(running):
            variant, seed, log_path, command, log, process = item
            if process.poll() is None:
                continue
            running.remove(item)
            log.close()
            if process.returncode:
                print(json.dumps(dict(variant=variant, seed=seed, failed=process.returncode, log=log_path)),
                      flush=True)
                continue
            row = _result(variant, seed, log_path, command)
            print(json.dumps(row), flush=True)
            with open(results, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    app.run(main)

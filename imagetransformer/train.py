"""Train an Image Transformer (or the PixelCNN++ baseline, `--model=pixelcnnpp`) with `model.fit`, driven by absl
flags.

```
python -m imagetransformer.train --model_dir=runs/demo --train_steps=300          # Fashion-MNIST, small model
python -m imagetransformer.train --config=cifar10_local_2d --model_dir=runs/c2d --strategy=mirrored
python -m imagetransformer.train --config=fashion_mnist_pixelcnnpp --model_dir=runs/pcnn
python -m imagetransformer.train --helpfull
```
The flags start from a named configuration (`--config`, see `imagetransformer/training/configs.py`); flags given on the
command line override it. The model, its optimizer (Adam with linear warm-up and inverse square root decay,
gradient clipping) and its metrics are built under the `--strategy`'s scope and trained with `model.fit`:

- every `--steps_per_epoch` steps (a Keras epoch): validation on `--val_examples` images of `--val_split`
  (`val_bits_per_dim`), `model_dir/model.weights.h5` written atomically, TensorBoard epoch summaries in
  `model_dir/logs` (loss, bits/dim, learning rate);
- every `--save_every` steps: Keras `BackupAndRestore` backs up the training state to `model_dir/backup`. Running
  the same command again after a crash or a kill resumes at the backed-up step; the run ends after exactly
  `--train_steps` optimizer steps in all. A finished run resumes from `model.weights.h5` (which holds the
  optimizer state too), so a larger `--train_steps` trains on;
- `TerminateOnNaN` stops a diverging run (exit status 1; `model.weights.h5` keeps the last finite weights).

`model_dir/config.json` records the model, data and training configuration, so that evaluation, sampling and
export rebuild the model from `--model_dir` alone. Training refuses a `model_dir` whose `config.json` holds a
different model configuration.

Bad flags, datasets or model directories end the process with one line on stderr (exit status 1), before anything
in `model_dir` is written.
"""

import dataclasses
import importlib.util
import math
import os
import re
import shutil
import time
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from imagetransformer.training import checkpoints
from imagetransformer.training import configs
from imagetransformer import data as data_lib
from imagetransformer.training import distribute
from imagetransformer import models
from imagetransformer import cli
from imagetransformer.evaluation import visualize
from imagetransformer.models.base import AutoregressiveImageModel
from imagetransformer.training.schedules import WarmupRsqrtDecay

FLAGS = flags.FLAGS
cli.define_train_flags()
flags.adopt_module_key_flags(cli)  # --help lists them

BACKUP_DIR = "backup"
WORKERS_DIR = "workers"  # non-chief workers' private directories in a multi-worker run
LOGS_DIR = "logs"
# Files of keras.callbacks.BackupAndRestore(double_checkpoint=True) in BACKUP_DIR.
BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_METADATA = "training_metadata.json"
PREVIOUS = ".bkp"


@dataclasses.dataclass
class TrainResult:
    """What `train` did.

    Attributes:
        model: the trained model (`ImageTransformer`, `SuperResolutionTransformer` or `PixelCNNPlusPlus`; its
            latest weights are also in `model_dir/model.weights.h5`).
        history: the `keras.callbacks.History` of this run's `fit`, or None when there was nothing to train.
        initial_step: optimizer steps the model had taken when this run started (0 unless resumed).
        final_step: optimizer steps taken in all when this run ended.
        steps_per_second: training throughput of this run, measured over the training steps only (the first,
            which traces and compiles, and validation excluded); None when fewer than two steps ran.
    """

    model: AutoregressiveImageModel
    history: Optional[keras.callbacks.History]
    initial_step: int
    final_step: int
    steps_per_second: Optional[float]


# ----------------------------------------------------------------------------------------------------------------
# Configuration.
# ----------------------------------------------------------------------------------------------------------------
def check_config(config):
    """A validated copy of a flat configuration (`imagetransformer.training.configs`): pairs as int tuples, ranges checked.

    The model's own arguments are checked by the model class (which knows the image shape); this checks the
    rest. Raises ValueError naming the flag.
    """
    missing = [key for key in configs.KEYS if key not in config]
    if missing:
        raise ValueError(f"Configuration lacks {missing}.")
    config = dict(config)
    if config["image_shape"] is not None:
        config["image_shape"] = cli.parse_ints(config["image_shape"], 3, "image_shape")
    for key in ("query_shape", "memory_flange", "conv_stem_kernel"):
        config[key] = cli.parse_ints(config[key], 2, key)
    if config["max_log_scale"] is not None and math.isinf(float(config["max_log_scale"])):
        config["max_log_scale"] = None  # --max_log_scale=inf: no upper clip
    if config["lr_decay"] not in configs.LR_DECAYS:
        raise ValueError(f"--lr_decay={config['lr_decay']!r} is not supported; choose one of "
                         f"{', '.join(configs.LR_DECAYS)}.")
    for key, minimum in (("train_steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("steps_per_epoch", 1),
                         ("save_every", 1), ("val_examples", 0), ("steps_per_execution", 1),
                         ("shuffle_buffer", 1), ("seed", None)):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (
                minimum is not None and value < minimum):
            raise ValueError(f"--{key}={value!r} must be an integer" + (f" >= {minimum}." if minimum is not None
                                                                         else "."))
        config[key] = int(value)
    execution = config["steps_per_execution"]
    for key in ("train_steps", "steps_per_epoch", "save_every"):
        if config[key] % execution:
            raise ValueError(f"--{key}={config[key]} must be a multiple of --steps_per_execution={execution} "
                             "(training stops, saves and validates only between executions).")
    if not float(config["learning_rate"]) > 0:
        raise ValueError(f"--learning_rate={config['learning_rate']!r} must be positive.")
    if not float(config["clipnorm"] or 0) >= 0:
        raise ValueError(f"--clipnorm={config['clipnorm']!r} must be >= 0 (0 disables clipping).")
    if config["mixed_precision"] not in configs.MIXED_PRECISION:
        raise ValueError(f"--mixed_precision={config['mixed_precision']!r} is not supported; choose one of "
                         f"{', '.join(configs.MIXED_PRECISION)}.")
    if config["conditional"] not in configs.CONDITIONAL:
        raise ValueError(f"--conditional={config['conditional']!r} is not supported; choose one of "
                         f"{', '.join(configs.CONDITIONAL)}.")
    if config["task"] not in configs.TASKS:
        raise ValueError(f"--task={config['task']!r} is not supported; choose one of {', '.join(configs.TASKS)}.")
    if config["task"] == "super_resolution" and config["model"] != "image_transformer":
        raise ValueError(f"--task=super_resolution needs --model=image_transformer (the encoder-decoder Image "
                         f"Transformer); --model={config['model']} has no super-resolution variant.")
    if config["task"] == "super_resolution" and config["conditional"] != "none":
        raise ValueError("--task=super_resolution is conditioned on the low-resolution image; it takes "
                         f"--conditional=none, not --conditional={config['conditional']}.")
    if config["conditional"] == "class" and config["model"] != "image_transformer":
        raise ValueError(f"--conditional=class needs --model=image_transformer (--model={config['model']} has no "
                         "class conditioning).")
    if not config["dataset"]:
        raise ValueError("--dataset must name a tensorflow-datasets image dataset, e.g. fashion_mnist or cifar10.")
    return config


def config_from_flags():
    """The flat configuration of `--config` with every flag given on the command line applied."""
    return configs.get_config(FLAGS.config, **{key: FLAGS[key].value for key in configs.KEYS})


_MODEL_ARG = re.compile(r"(?<![-\w])(" + "|".join(configs.MODEL_KEYS + ("image_shape",)) + r")=")


def _flag_message(error):
    """The model's error message with its argument names written as flags (`block_length=` -> `--block_length=`)."""
    return _MODEL_ARG.sub(r"--\1=", str(error))


def optimizer_step(model):
    """Optimizer steps `model` has taken (also for a mirrored `iterations` variable, which `int()` refuses)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


# ----------------------------------------------------------------------------------------------------------------
# Callbacks.
# ----------------------------------------------------------------------------------------------------------------
class SaveWeights(keras.callbacks.Callback):
    """At every epoch end, writes `model_dir/model.weights.h5` atomically (`checkpoints.save_weights`).

    The Keras `ModelCheckpoint(save_weights_only=True)` of this project: the file is written to a temporary name
    and renamed, so a kill leaves the previous weights. Epochs whose logs hold a NaN or infinite value (a
    diverging run stopped by `TerminateOnNaN`) are not saved.
    """

    def __init__(self, model_dir):
        super().__init__()
        self.model_dir = model_dir

    def on_epoch_end(self, epoch, logs=None):
        values = [float(v) for v in (logs or {}).values() if np.ndim(v) == 0]
        if all(math.isfinite(v) for v in values):
            checkpoints.save_weights(self.model, self.model_dir)
        else:
            logging.warning("Not saving the weights of epoch %d: non-finite metrics %s.", epoch + 1, logs)


class StopAtStep(keras.callbacks.Callback):
    """Stops training once the optimizer has taken `train_steps` steps (also in the middle of an epoch)."""

    def __init__(self, train_steps):
        super().__init__()
        self.train_steps = train_steps

    def on_train_batch_end(self, batch, logs=None):
        if optimizer_step(self.model) >= self.train_steps:
            self.model.stop_training = True


class StopAfterMinutes(keras.callbacks.Callback):
    """Stops training after `minutes` of wall time in `fit` (a time budget, e.g. for equal-budget comparisons)."""

    def __init__(self, minutes):
        super().__init__()
        self.seconds = 60.0 * minutes
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self._start >= self.seconds:
            self.model.stop_training = True


class StepTimer(keras.callbacks.Callback):
    """Measures training steps per second, leaving out the first execution (tracing) and validation."""

    def __init__(self):
        super().__init__()
        self.steps = 0
        self.seconds = 0.0
        self._start = None
        self._last_step = None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        step = optimizer_step(self.model)  # counts steps_per_execution > 1 right
        if self._last_step is not None:
            self.seconds += time.perf_counter() - self._start
            self.steps += step - self._last_step
        self._last_step = step

    @property
    def steps_per_second(self):
        return self.steps / self.seconds if self.steps and self.seconds > 0 else None


class _Summaries:
    """`tf.summary` whose `scalar` needs no `tensorboard` package.

    `tf.summary.scalar` is implemented by the `tensorboard` package; without it, this writes the same event
    (TensorBoard's "scalars" plugin format) with TensorFlow's own `tf.summary.write`.
    """

    def __getattr__(self, name):
        return getattr(tf.summary, name)

    @staticmethod
    def scalar(name, data, step=None, description=None):
        metadata = summary_pb2.SummaryMetadata(
            summary_description=description or "",
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        with tf.name_scope("scalar_summary"):
            return tf.summary.write(name, tf.cast(data, tf.float32), step=step, metadata=metadata)


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard, with step-level summaries numbered by optimizer step (continuing after a resume).

    Works without the `tensorboard` package (which only viewing the logs needs): see `_Summaries`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if importlib.util.find_spec("tensorboard") is None:
            self._summary_module = _Summaries()

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._global_train_batch = optimizer_step(self.model)


# ----------------------------------------------------------------------------------------------------------------
# Model directory.
# ----------------------------------------------------------------------------------------------------------------
def _completion_images(val_data, count, model_dir, with_labels=False):
    """The `CompletionImages` callback on the first `count` validation images, if it can run."""
    if not count or val_data is None:
        return []
    if importlib.util.find_spec("tensorboard") is None:
        logging.warning("Not writing completion images: tf.summary.image needs the tensorboard package.")
        return []
    elements = list(val_data.dataset.take(count).as_numpy_iterator())
    if with_labels:
        images, labels = np.stack([e[0] for e in elements]), np.array([e[1] for e in elements])
    else:
        images, labels = np.stack(elements), None
    return [visualize.CompletionImages(images, os.path.join(model_dir, LOGS_DIR, "images"), labels=labels)]


def _normalized(value):
    """JSON-comparable form (tuples as lists)."""
    if isinstance(value, (list, tuple)):
        return [_normalized(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    return value


def check_model_dir(model_dir, model_kwargs, mixed_precision):
    """Returns the existing `config.json` of `model_dir` (None for a new directory) after checking it matches.

    Raises:
        CheckpointError: `config.json` is corrupt, or holds another model configuration (or dtype policy, which
            changes the optimizer's state), or there are checkpoints without a `config.json`.
    """
    path = os.path.join(model_dir, checkpoints.CONFIG_FILE)
    if not os.path.exists(path):
        leftovers = [name for name in (checkpoints.WEIGHTS_FILE, BACKUP_DIR)
                     if os.path.exists(os.path.join(model_dir, name))]
        if leftovers:
            raise checkpoints.CheckpointError(
                f"--model_dir={model_dir} holds {', '.join(leftovers)} but no {checkpoints.CONFIG_FILE}: not a "
                "complete model directory; choose another --model_dir.")
        return None
    stored = checkpoints.load_config(model_dir)
    wanted = _normalized(model_kwargs)
    # The stored configuration as the model it builds: keys written before an option existed take its default.
    have = _normalized(checkpoints.model_config(checkpoints.build_model(model_dir)))
    diffs = [f"{key}={have.get(key)!r} (flags: {wanted.get(key)!r})"
             for key in sorted(set(wanted) | set(have)) if have.get(key) != wanted.get(key)]
    stored_policy = stored.get("train", {}).get("mixed_precision", "float32")
    if stored_policy != mixed_precision:
        diffs.append(f"mixed_precision={stored_policy!r} (flags: {mixed_precision!r})")
    if diffs:
        raise checkpoints.CheckpointError(
            f"--model_dir={model_dir} holds a different model: its {checkpoints.CONFIG_FILE} has "
            f"{'; '.join(diffs)}. Pass the same model flags to resume it, or choose a new --model_dir.")
    return stored


def _backup_paths(model_dir):
    backup = os.path.join(model_dir, BACKUP_DIR)
    return os.path.join(backup, BACKUP_WEIGHTS), os.path.join(backup, BACKUP_METADATA)


def restore(model, model_dir):
    """Loads the latest training state of `model_dir` into `model` (weights and optimizer, whose optimizer must be
    built); returns the file it came from, or None when there is none.

    The state of an interrupted run (`backup/`, kept by `BackupAndRestore`; its previous copy if the latest was
    cut off while being written) wins over `model.weights.h5` (written at epoch ends).

    Raises:
        CheckpointError: the files exist but none can be loaded.
    """
    weights, metadata = _backup_paths(model_dir)
    candidates = [path for path in (weights, weights + PREVIOUS) if os.path.exists(path)]
    errors = []
    for path in candidates:
        if path == weights:
            try:
                model.load_weights(path)
                return path
            except Exception as e:  # pylint: disable=broad-except  (h5py/keras raise many types for damaged files)
                errors.append(f"{path}: {type(e).__name__}: {e}")
                continue
        # The previous copy: Keras loads only files named *.weights.h5, and BackupAndRestore reads `weights`
        # first, so put a good copy there.
        try:
            with checkpoints.atomic_path(weights, suffix=".weights.h5") as tmp:
                shutil.copyfile(path, tmp)
                model.load_weights(tmp)  # an error here leaves `weights` as it was
        except Exception as e:  # pylint: disable=broad-except
            errors.append(f"{path}: {type(e).__name__}: {e}")
            continue
        if os.path.exists(metadata + PREVIOUS):
            shutil.copyfile(metadata + PREVIOUS, metadata)
        return path
    if candidates:
        raise checkpoints.CheckpointError(
            f"The backup of an interrupted run in {os.path.dirname(weights)} is corrupt ({'; '.join(errors)}); "
            f"delete {os.path.dirname(weights)} to resume from {checkpoints.WEIGHTS_FILE} instead.")
    path = os.path.join(model_dir, checkpoints.WEIGHTS_FILE)
    if not os.path.exists(path):
        return None
    try:
        model.load_weights(path)
    except Exception as e:  # pylint: disable=broad-except
        raise checkpoints.CheckpointError(
            f"{path} is corrupt or does not match {checkpoints.CONFIG_FILE} ({type(e).__name__}: {e}); restore it "
            "or choose a new --model_dir.") from e
    return path


# ----------------------------------------------------------------------------------------------------------------
# Training.
# ----------------------------------------------------------------------------------------------------------------
def _load(dataset, split, flag, data_dir, image_shape, **kwargs):
    try:
        return data_lib.load_images(dataset, split, data_dir=data_dir, image_shape=image_shape, **kwargs)
    except (ValueError, RuntimeError) as e:
        raise type(e)(f"--dataset={dataset} {flag}={split}: {e}") from e


def learning_rate_schedule(config):
    """The learning rate of `config`: linear warm-up to `learning_rate`, then `lr_decay`."""
    if config["lr_decay"] == "cosine":
        warmup = config["warmup_steps"]
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(config["train_steps"] - warmup, 1), warmup_target=float(config["learning_rate"]),
            warmup_steps=warmup)
    return WarmupRsqrtDecay(config["learning_rate"], config["warmup_steps"])


def build_model(config, image_shape, strategy, num_classes=None):
    """The compiled model of `config` (`--model`) with its optimizer built, under `strategy.scope()`; class-
    conditional with `num_classes`."""
    _, model_kwargs, _ = configs.split(config)
    if num_classes is not None:
        model_kwargs["num_classes"] = num_classes
    if config["task"] == "super_resolution":
        model_kwargs["model"] = "super_resolution_transformer"
    with strategy.scope():
        try:
            model = models.build(image_shape=image_shape, **model_kwargs)
        except ValueError as e:
            raise ValueError(_flag_message(e)) from e
        schedule = learning_rate_schedule(config)
        optimizer = keras.optimizers.Adam(schedule, clipnorm=float(config["clipnorm"] or 0) or None)
        # Under mixed_float16, compile wraps the optimizer in a LossScaleOptimizer.
        model.compile(optimizer=optimizer,
                      jit_compile="auto" if config["jit_compile"] is None else bool(config["jit_compile"]),
                      steps_per_execution=config["steps_per_execution"])
        model.optimizer.build(model.trainable_variables)
    return model


def train(config, model_dir, *, strategy="default", tpu=None, verbose=1, callbacks=(), train_minutes=None,
          summary_images=0):
    """Trains (or resumes training) the model of `config` into `model_dir`: what `python -m
    imagetransformer.train` does.

    Args:
        config: flat configuration (`imagetransformer.training.configs.get_config(...)`).
        model_dir: model directory (created if needed).
        strategy: `--strategy` name (`imagetransformer.training.distribute.get_strategy`).
        tpu: `--tpu`, with `strategy="tpu"`.
        verbose: Keras `fit` verbosity.
        callbacks: extra Keras callbacks, called after this module's.
        train_minutes: optional wall-clock budget; training stops after it (weights saved) even before
            `train_steps`.
        summary_images: complete this many validation images at each epoch end and show the grid in
            TensorBoard (needs the `tensorboard` package and validation data); 0 disables.

    Returns:
        A `TrainResult`.

    Raises:
        ValueError, RuntimeError, CheckpointError: bad configuration, data or model directory; raised before
            anything in `model_dir` is written.
        FloatingPointError: the loss became NaN (`model.weights.h5` keeps the last finite weights).
    """
    config = check_config(config)
    if not model_dir:
        raise ValueError("--model_dir is required: the directory to write the model into (e.g. runs/demo).")
    train_steps, batch_size = config["train_steps"], config["batch_size"]
    strategy_obj = distribute.get_strategy(strategy, tpu)
    replicas = strategy_obj.num_replicas_in_sync
    if not distribute.is_chief(strategy_obj):
        # A non-chief worker of a multi-worker run trains in lockstep with the chief (same steps, same weights) but
        # writes its config, weights, backups and logs to a private directory, so that only the chief writes
        # model_dir itself. Restarted with the same command, it resumes from its own backup, taken at the same
        # steps as the chief's.
        model_dir = os.path.join(model_dir, WORKERS_DIR, distribute.task_name(strategy_obj))
        summary_images = 0
    if batch_size % replicas:
        raise ValueError(f"--batch_size={batch_size} must be a multiple of the {replicas} replicas of "
                         f"--strategy={strategy}.")

    with_labels = config["conditional"] == "class"
    train_data = _load(config["dataset"], config["train_split"], "--train_split", config["data_dir"],
                       config["image_shape"], shuffle_files=True, with_labels=with_labels)
    num_classes = None
    if with_labels:
        num_classes = train_data.num_classes
        if not num_classes:
            raise ValueError(f"--conditional=class: --dataset={config['dataset']} has no class labels; use "
                             "--conditional=none.")
    val_data = None
    if config["val_examples"]:
        val_data = _load(config["dataset"], config["val_split"], "--val_split", config["data_dir"],
                         train_data.image_shape, with_labels=with_labels)

    keras.utils.set_random_seed(config["seed"])
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config["mixed_precision"])
    try:
        model = build_model(config, train_data.image_shape, strategy_obj, num_classes)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    model_kwargs = checkpoints.model_config(model)
    stored = check_model_dir(model_dir, model_kwargs, config["mixed_precision"])
    restored_from = restore(model, model_dir) if stored is not None else None
    initial_step = optimizer_step(model)
    if restored_from:
        logging.info("Resuming %s at step %d (from %s).", model_dir, initial_step, restored_from)
        print(f"Resuming at step {initial_step} of {train_steps} from {restored_from}.", flush=True)
    if initial_step >= train_steps:
        print(f"{model_dir} has already been trained for {initial_step} >= --train_steps={train_steps} steps; "
              "nothing to do (raise --train_steps to train on).", flush=True)
        return TrainResult(model, None, initial_step, initial_step, None)

    data_section, _, train_section = configs.split(config)
    data_section["image_shape"] = list(train_data.image_shape)
    train_section.update(strategy=strategy, replicas=replicas)
    checkpoints.save_config(model_dir, model_kwargs, data=_normalized(data_section),
                            train=_normalized(train_section))

    train_ds = data_lib.make_pipeline(train_data.dataset, batch_size, training=True,
                                      shuffle_buffer=config["shuffle_buffer"], with_labels=with_labels,
                                      seed=config["seed"] + initial_step)  # a resumed run sees new orders
    val_ds = None
    if val_data is not None:
        val_ds = data_lib.make_pipeline(val_data.dataset.take(config["val_examples"]), batch_size, training=False,
                                        with_labels=with_labels)
    if with_labels:  # {"images", "labels"} dicts: the model's inputs, no targets
        train_ds = data_lib.as_model_inputs(train_ds)
        val_ds = None if val_ds is None else data_lib.as_model_inputs(val_ds)
    if config["task"] == "super_resolution":  # {"images", "low_res"} dicts
        train_ds = data_lib.with_low_res(train_ds, model.scale)
        val_ds = None if val_ds is None else data_lib.with_low_res(val_ds, model.scale)

    steps_per_epoch = config["steps_per_epoch"]
    # Epoch e covers steps [e * steps_per_epoch, (e + 1) * steps_per_epoch) of an uninterrupted run; a run resumed
    # in the middle of an epoch restarts that epoch, and StopAtStep ends training at exactly train_steps.
    epochs = math.ceil(train_steps / steps_per_epoch)
    initial_epoch = initial_step // steps_per_epoch
    timer = StepTimer()
    all_callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(model_dir, BACKUP_DIR), save_freq=config["save_every"],
                                         double_checkpoint=True),
        keras.callbacks.TerminateOnNaN(),
        StopAtStep(train_steps),
        SaveWeights(model_dir),
        TensorBoard(os.path.join(model_dir, LOGS_DIR), update_freq=min(steps_per_epoch, 10), write_graph=False),
        timer,
        *([StopAfterMinutes(train_minutes)] if train_minutes is not None else []),
        *_completion_images(val_data, summary_images, model_dir, with_labels),
        *callbacks,
    ]
    print(f"Training {model.count_params():,} parameters ({model.description}) on {config['dataset']} "
          f"{'x'.join(map(str, train_data.image_shape))}: steps {initial_step}..{train_steps}, batch {batch_size} "
          f"on {replicas} replica(s), epochs of {steps_per_epoch} steps; model_dir {model_dir}.", flush=True)
    history = model.fit(train_ds, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                        validation_data=val_ds, callbacks=all_callbacks, verbose=verbose, shuffle=False)
    final_step = optimizer_step(model)
    losses = history.history.get("loss") or [float("nan")]
    if not math.isfinite(losses[-1]):
        raise FloatingPointError(
            f"Training diverged: the loss became {losses[-1]} by step {final_step}; {model_dir}/"
            f"{checkpoints.WEIGHTS_FILE} keeps the last finite weights. Lower --learning_rate, raise "
            "--warmup_steps or lower --clipnorm.")
    return TrainResult(model, history, initial_step, final_step, timer.steps_per_second)


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value (--helpfull lists them).")
    cli.default_to_warnings()
    with cli.exit_on_user_errors():
        try:
            result = train(config_from_flags(), FLAGS.model_dir, strategy=FLAGS.strategy, tpu=FLAGS.tpu,
                           verbose=int(FLAGS.verbose), train_minutes=FLAGS.train_minutes,
                           summary_images=FLAGS.summary_images)
        except FloatingPointError as e:
            cli.fail(e)
        except KeyboardInterrupt:
            cli.fail(f"interrupted; run the same command again to resume from {FLAGS.model_dir}/"
                          f"{BACKUP_DIR}.", exit_code=130)
    speed = f", {result.steps_per_second:.2f} steps/s" if result.steps_per_second else ""
    print(f"Trained steps {result.initial_step}..{result.final_step}{speed}; model in {FLAGS.model_dir}.")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)

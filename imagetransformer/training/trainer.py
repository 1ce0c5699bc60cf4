"""Training a model of a configuration into a model directory with `model.fit`: what `python -m
imagetransformer.train` does.

The model, its optimizer (Adam with linear warm-up and `lr_decay`, gradient clipping) and its metrics are built
under the strategy's scope and trained with `model.fit`:

- every `steps_per_epoch` steps (a Keras epoch): validation on `val_examples` images of `val_split`
  (`val_bits_per_dim`), `model_dir/model.weights.h5` written atomically, TensorBoard epoch summaries in
  `model_dir/logs` (loss, bits/dim, learning rate);
- every `save_every` steps: Keras `BackupAndRestore` backs up the training state to `model_dir/backup`. Running
  the same training again after a crash or a kill resumes at the backed-up step; the run ends after exactly
  `train_steps` optimizer steps in all. A finished run resumes from `model.weights.h5` (which holds the
  optimizer state too), so a larger `train_steps` trains on;
- `TerminateOnNaN` stops a diverging run (`model.weights.h5` keeps the last finite weights).

`model_dir/config.json` records the model, data and training configuration, so that evaluation, sampling and
export rebuild the model from `model_dir` alone. Training refuses a `model_dir` whose `config.json` holds a
different model configuration, before anything in it is written.

```python
from imagetransformer.training import configs, trainer
result = trainer.train(configs.get_config("fashion_mnist_small", train_steps=300), "runs/demo")  # a Config
```
"""

import dataclasses
import math
import os
import re
from typing import Optional

from absl import logging
import keras

from imagetransformer import data as data_lib
from imagetransformer import models
from imagetransformer.models.base import AutoregressiveImageModel
from imagetransformer.training import checkpoints, configs, distribute
from imagetransformer.training.callbacks import (
    ProgressBar,
    ProgressLines,
    SaveWeights,
    StepTimer,
    StopAfterMinutes,
    StopAtStep,
    TensorBoard,
    completion_images,
    optimizer_step,
)
from imagetransformer.training.schedules import WarmupRsqrtDecay


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
        model_dir: the directory this run wrote: `model_dir`, or for a non-chief worker of a multi-worker run its
            private `model_dir/workers/<task>`.
    """

    model: AutoregressiveImageModel
    history: Optional[keras.callbacks.History]
    initial_step: int
    final_step: int
    steps_per_second: Optional[float]
    model_dir: str



_MODEL_ARG = re.compile(r"(?<![-\w])(" + "|".join(configs.MODEL_KEYS + ("image_shape", "num_classes")) + r")=")


def _flag_message(error):
    """The model's error message with its argument names written as flags (`block_length=` -> `--block_length=`)."""
    return _MODEL_ARG.sub(r"--\1=", str(error))



def _load(dataset, split, flag, data_dir, image_shape, **kwargs):
    try:
        return data_lib.load_images(dataset, split, data_dir=data_dir, image_shape=image_shape, **kwargs)
    except (ValueError, RuntimeError) as e:
        raise type(e)(f"--dataset={dataset} {flag}={split}: {e}") from e


def learning_rate_schedule(train):
    """The learning rate of a `TrainConfig`: linear warm-up to `learning_rate`, then `lr_decay`."""
    if train.lr_decay == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(train.train_steps - train.warmup_steps, 1), warmup_target=float(train.learning_rate),
            warmup_steps=train.warmup_steps)
    return WarmupRsqrtDecay(train.learning_rate, train.warmup_steps)


def build_model(config, image_shape, strategy, num_classes=None):
    """The compiled model of a `Config` (its `--model` and `--task`) with its optimizer built, under
    `strategy.scope()`; class-conditional with `num_classes`."""
    train = config.train
    with strategy.scope():
        try:
            model = config.model.build(image_shape, config.data.task, num_classes)
        except ValueError as e:
            raise ValueError(_flag_message(e)) from e
        optimizer = keras.optimizers.Adam(learning_rate_schedule(train), clipnorm=float(train.clipnorm or 0) or None)
        # Under mixed_float16, compile wraps the optimizer in a LossScaleOptimizer.
        model.compile(optimizer=optimizer, jit_compile="auto" if train.jit_compile is None else bool(train.jit_compile),
                      steps_per_execution=train.steps_per_execution)
        model.optimizer.build(model.trainable_variables)
    return model


def train(config, model_dir, *, strategy="default", tpu=None, verbose=1, callbacks=(), train_minutes=None,
          summary_images=0, progress_every_s=60.0):
    """Trains (or resumes training) the model of `config` into `model_dir`: what `python -m
    imagetransformer.train` does.

    Args:
        config: a `imagetransformer.training.configs.Config` (`configs.get_config(...)`).
        model_dir: model directory (created if needed).
        strategy: `--strategy` name (`imagetransformer.training.distribute.get_strategy`).
        tpu: `--tpu`, with `strategy="tpu"`.
        verbose: Keras `fit` verbosity; with 2 (a line per epoch) also a progress line every `progress_every_s`
            seconds inside an epoch (`ProgressLines`).
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
    if not isinstance(config, configs.Config):
        raise TypeError(f"config must be an imagetransformer.training.configs.Config (configs.get_config(...)), got "
                        f"{type(config).__name__}.")
    if not model_dir:
        raise ValueError("--model_dir is required: the directory to write the model into (e.g. runs/demo).")
    batch_size = config.train.batch_size
    strategy_obj = distribute.get_strategy(strategy, tpu)
    replicas = strategy_obj.num_replicas_in_sync
    if not distribute.is_chief(strategy_obj):
        # A non-chief worker of a multi-worker run trains in lockstep with the chief (same steps, same weights) but
        # writes its config, weights, backups and logs to a private directory, so that only the chief writes
        # model_dir itself. Restarted with the same command, it resumes from its own backup, taken at the same
        # steps as the chief's.
        model_dir = os.path.join(model_dir, checkpoints.WORKERS_DIR, distribute.task_name(strategy_obj))
        summary_images = 0
    if batch_size % replicas:
        raise ValueError(f"--batch_size={batch_size} must be a multiple of the {replicas} replicas of "
                         f"--strategy={strategy}.")
    with checkpoints.exclusive(model_dir):
        return _train(config, model_dir, strategy, strategy_obj, verbose, callbacks, train_minutes, summary_images,
                      progress_every_s)


def _train(config, model_dir, strategy, strategy_obj, verbose, callbacks, train_minutes, summary_images,
           progress_every_s):
    """`train` in a model directory held by this run."""
    data, train = config.data, config.train
    train_steps, batch_size = train.train_steps, train.batch_size
    replicas = strategy_obj.num_replicas_in_sync

    with_labels = data.conditional == "class"
    train_data = _load(data.dataset, data.train_split, "--train_split", data.data_dir, data.image_shape,
                       shuffle_files=True, with_labels=with_labels)
    num_classes = None
    if with_labels:
        num_classes = train_data.num_classes
        if not num_classes:
            raise ValueError(f"--conditional=class: --dataset={data.dataset} has no class labels; use "
                             "--conditional=none.")
    val_data = None
    if data.val_examples:
        val_data = _load(data.dataset, data.val_split, "--val_split", data.data_dir, train_data.image_shape,
                         with_labels=with_labels)

    keras.utils.set_random_seed(train.seed)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(train.mixed_precision)
    try:
        model = build_model(config, train_data.image_shape, strategy_obj, num_classes)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    model_kwargs = models.config_of(model)
    stored = checkpoints.check_model_dir(model_dir, model_kwargs, train.mixed_precision)
    restored_from = checkpoints.restore(model, model_dir) if stored is not None else None
    initial_step = optimizer_step(model)
    if restored_from:
        logging.info("Resuming %s at step %d (from %s).", model_dir, initial_step, restored_from)
        print(f"Resuming at step {initial_step} of {train_steps} from {restored_from}.", flush=True)
    if initial_step >= train_steps:
        print(f"{model_dir} has already been trained for {initial_step} >= --train_steps={train_steps} steps; "
              "nothing to do (raise --train_steps to train on).", flush=True)
        return TrainResult(model, None, initial_step, initial_step, None, model_dir)

    data_section, train_section = config.sections(image_shape=list(train_data.image_shape))
    train_section.update(strategy=strategy, replicas=replicas)
    checkpoints.save_config(model_dir, model_kwargs, data=checkpoints.normalized(data_section),
                            train=checkpoints.normalized(train_section))

    train_ds = data_lib.make_pipeline(train_data.dataset, batch_size, training=True, cache=not train_data.in_memory,
                                      shuffle_buffer=data.shuffle_buffer, with_labels=with_labels,
                                      seed=train.seed + initial_step)  # a resumed run sees new orders
    val_ds = None
    if val_data is not None:
        val_ds = data_lib.make_pipeline(val_data.dataset.take(data.val_examples), batch_size, training=False,
                                        with_labels=with_labels)
    if with_labels:  # {"images", "labels"} dicts: the model's inputs, no targets
        train_ds = data_lib.as_model_inputs(train_ds)
        val_ds = None if val_ds is None else data_lib.as_model_inputs(val_ds)
    if data.task == "super_resolution":  # {"images", "low_res"} dicts
        train_ds = data_lib.with_low_res(train_ds, model.scale)
        val_ds = None if val_ds is None else data_lib.with_low_res(val_ds, model.scale)

    steps_per_epoch = train.steps_per_epoch
    # Epoch e covers steps [e * steps_per_epoch, (e + 1) * steps_per_epoch) of an uninterrupted run; a run resumed
    # in the middle of an epoch restarts that epoch, and StopAtStep ends training at exactly train_steps.
    epochs = math.ceil(train_steps / steps_per_epoch)
    initial_epoch = initial_step // steps_per_epoch
    timer = StepTimer()
    all_callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(model_dir, checkpoints.BACKUP_DIR), save_freq=train.save_every,
                                         double_checkpoint=True),
        keras.callbacks.TerminateOnNaN(),
        StopAtStep(train_steps),
        SaveWeights(model_dir),
        TensorBoard(os.path.join(model_dir, checkpoints.LOGS_DIR), update_freq=min(steps_per_epoch, 10), write_graph=False),
        timer,
        *([StopAfterMinutes(train_minutes)] if train_minutes is not None else []),
        *([ProgressBar()] if verbose in (1, 2) else []),
        *([ProgressLines(train_steps, progress_every_s)] if verbose == 2 else []),
        *completion_images(val_data, summary_images, model_dir, with_labels),
        *callbacks,
    ]
    print(f"Training {model.count_params():,} parameters ({model.description}) on {data.dataset} "
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
    return TrainResult(model, history, initial_step, final_step, timer.steps_per_second, model_dir)


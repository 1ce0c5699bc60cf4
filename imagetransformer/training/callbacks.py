"""Keras callbacks of training: atomic weights at epoch ends, stopping at a step or after minutes, throughput,
TensorBoard numbered by optimizer step, and completion grids of validation images."""

import importlib.util
import math
import os
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from imagetransformer.evaluation import visualize
from imagetransformer.training import checkpoints


def optimizer_step(model):
    """Optimizer steps `model` has taken (also for a mirrored `iterations` variable, which `int()` refuses)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))



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


class ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar of `fit(verbose=1)` (and epoch line of `verbose=2`), except that an epoch training stops
    in the middle of (at `--train_steps`, or at a time budget) ends at the steps it ran: Keras fills the bar to the
    whole epoch, so the last epoch of a resumed run showed "100/100" for 50 steps."""

    def _finalize_progbar(self, logs):
        stopped_early = self.model is not None and self.model.stop_training and self.progbar is not None
        if stopped_early and self.target and 0 < self.seen < self.target:
            self.progbar.target = self.seen
            self.progbar.update(self.seen, list((logs or {}).items()), finalize=True)
            return
        super()._finalize_progbar(logs)


class ProgressLines(keras.callbacks.Callback):
    """One line on stdout every `every_s` seconds inside an epoch, for `fit(verbose=2)` (which prints only at epoch
    ends) in logs and terminals without a progress bar:

        step 1200/10000 (12%): loss 2.1734, bits_per_dim 3.1355; 1.92 steps/s, 1 h 16 min left

    The rate is this run's (since its first step), the time left that rate over the steps still to go.
    """

    def __init__(self, train_steps, every_s=60.0):
        super().__init__()
        self.train_steps = int(train_steps)
        self.every_s = float(every_s)
        self._first = self._last_print = None

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if self._first is not None and now - self._last_print < self.every_s:
            return  # the step count (a variable read) only when a line is due
        step = optimizer_step(self.model)
        self._last_print = now
        if self._first is None:
            self._first = (now, step)
            return
        rate = (step - self._first[1]) / max(now - self._first[0], 1e-9)
        logs = dict(sorted((logs or {}).items(), key=lambda item: item[0] != "loss"))  # the loss first
        metrics = ", ".join(f"{k} {float(v):.4f}" for k, v in logs.items() if np.ndim(v) == 0)
        left = _duration((self.train_steps - step) / rate) if rate > 0 else "?"
        print(f"step {step}/{self.train_steps} ({100 * step // self.train_steps}%): {metrics}; {rate:.2f} steps/s, "
              f"{left} left", flush=True)


def _duration(seconds):
    """`1 h 16 min`, `7 min 5 s`, `42 s`."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


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

    def on_epoch_end(self, epoch, logs=None):
        """Epoch summaries (`epoch_loss`, `epoch_val_bits_per_dim`, ...) at the optimizer step the epoch ended on,
        the same axis as the batch summaries and the completion images, instead of at the epoch number."""
        del epoch
        super().on_epoch_end(optimizer_step(self.model), logs)


def completion_images(val_data, count, model_dir, with_labels=False):
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
    return [visualize.CompletionImages(images, os.path.join(model_dir, checkpoints.LOGS_DIR, "images"), labels=labels)]


"""`tf.distribute` strategies by name, for `--strategy` (like `official.common.distribute_utils` of
tensorflow/models).

```python
strategy = get_strategy("mirrored")
with strategy.scope():
    model = ImageTransformer(...)
    model.compile(optimizer=...)
model.fit(dataset, ...)          # the global batch is split across strategy.num_replicas_in_sync replicas
```
"""

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

KERAS_MULTI_WORKER_ISSUE = "https://github.com/keras-team/keras/issues/20585"


def get_strategy(name="default", tpu=None):
    """Returns the `tf.distribute.Strategy` called `name`.

    Args:
        name: one of
            - `"default"`: TensorFlow's default strategy (one device: the first GPU if any, else the CPU);
            - `"mirrored"`: `MirroredStrategy` over all local GPUs; without GPUs, over all logical CPU devices
              (one CPU device unless more were configured with `tf.config.set_logical_device_configuration`);
            - `"multi_worker"`: `MultiWorkerMirroredStrategy` from `TF_CONFIG`. Refused for now: Keras 3's
              `model.fit` fails under it (keras-team/keras issue 20585);
            - `"tpu"`: `TPUStrategy` on the TPU named by `tpu`.
        tpu: with `name="tpu"`: the TPU's name or `grpc://` address for `TPUClusterResolver` (`""` or None: the
            local TPU of a TPU VM, or the one named in `$TPU_NAME`). Must be None for other strategies.

    Raises:
        ValueError: unknown name, `tpu` given without `name="tpu"`, no TPU found, or `"multi_worker"`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"--strategy={name!r} is not supported; choose one of {', '.join(STRATEGIES)}.")
    if tpu and name != "tpu":
        raise ValueError(f"--tpu={tpu!r} is only used with --strategy=tpu (got --strategy={name}).")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _mirrored()
    if name == "multi_worker":
        raise ValueError(_multi_worker_refusal())
    return _tpu(tpu)


def _mirrored():
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    # NCCL (the default all-reduce) needs GPUs; on CPUs reduce on one device.
    return tf.distribute.MirroredStrategy(devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())


def _multi_worker_refusal():
    cluster = ""
    tf_config = os.environ.get("TF_CONFIG")
    if tf_config:
        try:
            cluster = f" (TF_CONFIG names {sum(len(v) for v in json.loads(tf_config)['cluster'].values())} tasks)"
        except (ValueError, KeyError, TypeError, AttributeError):
            cluster = " (TF_CONFIG is set but not valid JSON with a 'cluster')"
    return (
        f"--strategy=multi_worker is not supported yet{cluster}: Keras 3 model.fit fails under "
        f"MultiWorkerMirroredStrategy ({KERAS_MULTI_WORKER_ISSUE}); use --strategy=mirrored for all GPUs of "
        "one machine, or --strategy=tpu."
    )


def _tpu(tpu):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        where = f"--tpu={tpu!r}" if tpu else "a local TPU (no --tpu given, $TPU_NAME unset or not found)"
        raise ValueError(
            f"--strategy=tpu: could not connect to {where}: {' '.join(str(e).split())}. Pass --tpu=<name or "
            "grpc://address> of a reachable TPU, or choose --strategy=default or mirrored."
        ) from e
    return tf.distribute.TPUStrategy(resolver)

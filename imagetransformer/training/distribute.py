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



def get_strategy(name="default", tpu=None):
    """Returns the `tf.distribute.Strategy` called `name`.

    Args:
        name: one of
            - `"default"`: TensorFlow's default strategy (one device: the first GPU if any, else the CPU);
            - `"mirrored"`: `MirroredStrategy` over all local GPUs; without GPUs, over all logical CPU devices
              (one CPU device unless more were configured with `tf.config.set_logical_device_configuration`);
            - `"multi_worker"`: `MultiWorkerMirroredStrategy` over the cluster of `TF_CONFIG` (every worker runs
              the same command; collectives over gRPC, ring all-reduce on CPUs). `ImageTransformer` carries the
              fix that Keras 3's `model.fit` needs under it (keras-team/keras issue 20585);
            - `"tpu"`: `TPUStrategy` on the TPU named by `tpu`.
        tpu: with `name="tpu"`: the TPU's name or `grpc://` address for `TPUClusterResolver` (`""` or None: the
            local TPU of a TPU VM, or the one named in `$TPU_NAME`). Must be None for other strategies.

    Raises:
        ValueError: unknown name, `tpu` given without `name="tpu"`, no TPU found, or `"multi_worker"` without a
            valid `TF_CONFIG`.
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
        return _multi_worker()
    return _tpu(tpu)


def _mirrored():
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    # NCCL (the default all-reduce) needs GPUs; on CPUs reduce on one device.
    return tf.distribute.MirroredStrategy(devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())


def _multi_worker():
    tf_config = os.environ.get("TF_CONFIG")
    try:
        parsed = json.loads(tf_config or "null")
        cluster, task = parsed["cluster"], parsed["task"]
        valid = 0 <= int(task["index"]) < len(cluster[task["type"]])
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise ValueError(
            "--strategy=multi_worker needs TF_CONFIG, a JSON object naming the cluster and this process' task, "
            'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
            '"index": 0}}\' (got ' + (repr(tf_config) if tf_config else "none") + ")."
        )
    communication = tf.distribute.experimental.CommunicationImplementation
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=communication.AUTO if tf.config.list_physical_devices("GPU") else communication.RING)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def is_chief(strategy):
    """Whether this process writes the model directory: always, except for non-chief multi-worker tasks.

    In a `TF_CONFIG` cluster the chief is the `chief` task or, without one, worker 0 (as in TensorFlow's own
    multi-worker tutorials).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def task_name(strategy):
    """`<task type>_<index>` of this process in a multi-worker cluster (for its private scratch directory)."""
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type}_{resolver.task_id}"


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

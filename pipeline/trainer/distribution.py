"""Where fine-tuning runs: one device, every device of this machine, or several workers.

The Trainer setting ``distribution`` chooses a ``tf.distribute`` strategy:

- ``"none"``: TensorFlow's default strategy (one device).
- ``"mirrored"``: ``MirroredStrategy`` over every GPU of this machine, or over every logical
  CPU device when it has no GPU (one, unless the process split the CPU with
  ``tf.config.set_logical_device_configuration``). Each replica takes an equal share of
  every batch (``batch_size`` is the global batch); Keras scales each replica's loss,
  penalties included, by ``1 / replicas`` and the gradients are summed across replicas, so a
  step is the same computation as on one device (``replica_datasets`` leaves out the partial
  batch that would break this).
- ``"multi_worker"``: ``MultiWorkerMirroredStrategy`` over the cluster in ``TF_CONFIG``. Every
  worker runs the same ``run_fn`` with the same arguments; the chief (task ``chief``, or
  ``worker`` 0 when the cluster has no ``chief``) writes the Trainer's outputs, the others
  write into temporary folders they delete (see ``worker_outputs``). Keras 3.12.4 cannot
  ``fit`` across workers (known upstream failure): ``check_keras_multi_worker`` says so in
  seconds. See docs/scale-distribution.md.
- ``"auto"``: ``"mirrored"`` when this machine has more than one GPU, else ``"none"``.

>>> strategy, mixed = resolve_devices(TrainerConfig(num_classes=2, distribution="mirrored"))
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import keras
import tensorflow as tf
from absl import logging

if TYPE_CHECKING:
    from backbone_regularizer.pipeline.trainer.config import TrainerConfig

TF_CONFIG_ENV = "TF_CONFIG"
# Prefix of the custom_config keys of tfx.extensions.google_cloud_ai_platform.
PLATFORM_KEY_PREFIX = "ai_platform_"
# Cluster jobs MultiWorkerMirroredStrategy trains on (it has no parameter servers).
_TRAINING_JOBS = ("chief", "worker")
KNOWN_MULTI_WORKER_ISSUES = (
    "https://github.com/keras-team/keras/issues/20585, "
    "https://github.com/tensorflow/tensorflow/issues/72388"
)


def trainer_settings(custom_config: Mapping | None) -> dict:
    """The Trainer's ``custom_config`` without the keys of TFX's Google Cloud extension.

    ``tfx.extensions.google_cloud_ai_platform.Trainer`` (the way to start one executor per
    worker on Vertex AI) reads its own keys from the same ``custom_config``
    (``ai_platform_training_args``, ``ai_platform_enable_vertex``, ...) and hands all of it
    to ``run_fn`` on every replica; they are not trainer settings.
    """
    return {
        key: value
        for key, value in dict(custom_config or {}).items()
        if not key.startswith(PLATFORM_KEY_PREFIX)
    }


def replica_devices() -> list[str]:
    """The devices ``"mirrored"`` puts a replica on: every GPU, else every logical CPU."""
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


def read_tf_config(environ: Mapping[str, str] | None = None) -> dict:
    """The cluster and this process's task from ``TF_CONFIG``, checked.

    Raises:
        ValueError: ``TF_CONFIG`` is unset, not JSON, has no chief or worker in its
            ``cluster``, or names a ``task`` that is not one of them.
    """
    value = (os.environ if environ is None else environ).get(TF_CONFIG_ENV)
    expected = (
        'Expected TF_CONFIG to be JSON like {"cluster": {"worker": ["host:port", ...]}, '
        '"task": {"type": "worker", "index": 0}} for distribution="multi_worker" (the '
        "platform sets it on every worker)."
    )
    try:
        config = json.loads(value) if value else None
    except json.JSONDecodeError:
        config = None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    valid = (
        isinstance(cluster, dict)
        and any(cluster.get(job) for job in _TRAINING_JOBS)
        and isinstance(task, dict)
        and task.get("type") in _TRAINING_JOBS
        and isinstance(task.get("index"), int)
        and 0 <= task["index"] < len(cluster.get(task["type"]) or ())
    )
    if not valid:
        raise ValueError(f"{expected} Received: TF_CONFIG={value!r}")
    return config


def multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """``MultiWorkerMirroredStrategy`` over the cluster in ``TF_CONFIG``.

    Raises:
        ValueError: no valid ``TF_CONFIG`` (see ``read_tf_config``).
        RuntimeError: TensorFlow's runtime already started in this process.
    """
    read_tf_config()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        raise RuntimeError(
            "Expected distribution='multi_worker' to set up the cluster before TensorFlow's "
            "runtime starts in this process (it configures collective ops). Received: "
            f"{error}. Run each worker in a fresh process and run nothing with TensorFlow "
            "before run_fn."
        ) from error


def resolve_devices(config: TrainerConfig) -> tuple[tf.distribute.Strategy, bool]:
    """The strategy of ``config.distribution`` and whether to train in mixed_float16.

    Raises:
        ValueError: ``batch_size`` not a multiple of the replicas; ``"multi_worker"`` without
            a valid ``TF_CONFIG``.
        RuntimeError: ``"multi_worker"`` after TensorFlow's runtime started (see
            ``multi_worker_strategy``).
    """
    # multi_worker first: its strategy configures collective ops, which TensorFlow allows
    # only before its runtime starts (listing devices starts it).
    strategy = multi_worker_strategy() if config.distribution == "multi_worker" else None
    gpus = tf.config.list_logical_devices("GPU")
    if strategy is None:
        if config.distribution == "mirrored" or (config.distribution == "auto" and len(gpus) > 1):
            strategy = tf.distribute.MirroredStrategy(replica_devices())
        else:
            strategy = tf.distribute.get_strategy()
    mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and bool(gpus))
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        # Keras averages the loss on each replica, then over replicas: with unequal shares
        # the examples of the smaller share weigh more, and the first uneven batch fails.
        raise ValueError(
            "Invalid trainer setting `batch_size`. Expected a multiple of the "
            f"{replicas} replicas of distribution={config.distribution!r} (the global batch "
            f"is split equally between them). Received: batch_size={config.batch_size}"
        )
    logging.info(
        "distribution %r: %s with %d replicas in sync%s",
        config.distribution,
        type(strategy).__name__,
        replicas,
        f" across {num_workers(strategy)} workers" if num_workers(strategy) > 1 else "",
    )
    return strategy, mixed


def even_batches(dataset: tf.data.Dataset, batch_size: int, replicas: int) -> tf.data.Dataset:
    """Training batches every replica gets an equal share of: the last, partial batch of each
    epoch is left out when there are several replicas.

    Keras averages each replica's loss over its own share of the batch and then over the
    replicas, which is the mean over the batch only when the shares are equal: a partial
    batch of 3 on 2 replicas would weigh its lone example as much as the other two
    together. (Evaluation metrics are exact whatever the split: they are sums and counts.)
    The examples left out change from epoch to epoch as the training split is reshuffled.
    """
    if replicas == 1:
        return dataset
    return dataset.filter(lambda images, labels: tf.shape(labels)[0] == batch_size)


def replica_datasets(
    train: tf.data.Dataset,
    evaluation: tf.data.Dataset,
    batch_size: int,
    strategy: tf.distribute.Strategy,
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """The training and evaluation batches as ``strategy``'s replicas must get them.

    Training batches are ``even_batches``. Across workers both datasets are sharded by data:
    every worker reads the whole split in the same order (the shuffle is seeded) and keeps its
    share of every batch. TensorFlow's default tries to give each worker its own files and
    fails when a split has fewer files than there are workers ("Could not apply FILE based
    sharding"); with unequal files the workers would not even run the same number of steps.
    """
    train = even_batches(train, batch_size, strategy.num_replicas_in_sync)
    if num_workers(strategy) > 1:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        train, evaluation = train.with_options(options), evaluation.with_options(options)
    return train, evaluation


def _cluster(strategy: tf.distribute.Strategy):
    """``(cluster dict, task type, task id)`` of a multi-worker strategy, else None."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None
    cluster = resolver.cluster_spec().as_dict()
    if not cluster:
        return None
    return cluster, resolver.task_type, resolver.task_id


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many processes train together (1 unless a multi-worker cluster)."""
    cluster = _cluster(strategy)
    if cluster is None:
        return 1
    return sum(len(cluster[0].get(job, ())) for job in _TRAINING_JOBS)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the outputs: task ``chief``, or ``worker`` 0 when the
    cluster has no chief; always true outside a multi-worker cluster."""
    cluster = _cluster(strategy)
    if cluster is None:
        return True
    jobs, task_type, task_id = cluster
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and not jobs.get("chief")


@contextlib.contextmanager
def worker_outputs(
    strategy: tf.distribute.Strategy, serving_model_dir: str, model_run_dir: str
) -> Iterator[tuple[str, str]]:
    """``(serving_model_dir, model_run_dir)`` this process writes to.

    The chief gets the Trainer's folders. Every other worker of a multi-worker cluster must
    still save (saving a mirrored model may run collective ops all workers take part in), so
    it gets two folders in a temporary directory, deleted on leaving the block, failure or
    not: only the chief's export reaches the artifact.
    """
    if is_chief(strategy):
        yield serving_model_dir, model_run_dir
        return
    with tempfile.TemporaryDirectory(prefix="non-chief-worker-") as tmp:
        yield os.path.join(tmp, "serving"), os.path.join(tmp, "model_run")


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Wait until every worker of the cluster got here (a collective sum of ones).

    The Trainer executor of every worker checks, once ``run_fn`` returns, that
    ``serving_model_dir`` exists: the other workers must not return before the chief has
    written it.
    """
    if num_workers(strategy) == 1:
        return
    arrived = strategy.reduce(
        tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None
    )
    logging.info("all %d replicas reached the end of training", int(arrived))


def check_keras_multi_worker(strategy: tf.distribute.Strategy) -> None:
    """Fail in seconds, before the backbone is loaded and the baselines fitted, when this
    Keras cannot ``fit`` under a multi-worker cluster: a one-Dense model, one step.

    Raises:
        RuntimeError: Keras' ``fit`` fails under ``strategy``; the message carries its error.
    """
    if num_workers(strategy) == 1:
        return
    with strategy.scope():
        inputs = keras.Input((1,))
        model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        model.compile(optimizer="sgd", loss="mse")
    size = strategy.num_replicas_in_sync
    data = tf.data.Dataset.from_tensors((tf.zeros((size, 1)), tf.zeros((size, 1))))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    try:
        model.fit(data.with_options(options), epochs=1, verbose=0)
    except Exception as error:
        raise RuntimeError(
            "Expected Keras to train under MultiWorkerMirroredStrategy across "
            f"{num_workers(strategy)} workers (distribution='multi_worker'). Received: "
            f"Keras {keras.__version__} with TensorFlow {tf.__version__} failed to fit a "
            f"one-layer model: {type(error).__name__}: {str(error).rstrip('.')}. Known "
            f"upstream failures: {KNOWN_MULTI_WORKER_ISSUES}. On one machine with several "
            "GPUs use "
            "distribution='mirrored'."
        ) from error

"""Distribution: 2 replicas compute what 1 does; strategies, TF_CONFIG, the chief's outputs.

The 2-replica run happens in a fresh process (``tests.trainer.two_replicas``) whose CPU is
split into 2 logical devices before TensorFlow starts, so ``MirroredStrategy`` really has 2
replicas: the path a machine with several GPUs takes. Tolerances (float32; measured on a
shared 2-core machine: losses equal to the last bit, gradients 8e-6 apart relatively,
exported probabilities 3e-8 apart):

* loss of one batch, penalties included: ``rtol=1e-6`` of data loss + penalties;
* gradient of one step: ``|g - g_ref| <= 1e-4 |g_ref|`` against the gradient taken by hand
  on one device, where the penalties' part is 12% of ``|g_ref|``: a penalty counted on
  each replica (2x) or on none would be 1,000 times over the tolerance;
* BatchNorm moving statistics: bit for bit;
* fine-tuning histories ``rtol=1e-5``; exported model's probabilities ``atol=1e-5``, while
  they differ by 0.08 between the two classes.
"""

import json
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from backbone_regularizer.components.regularizer import RegularizationSpec
from backbone_regularizer.pipeline.trainer import distribution
from backbone_regularizer.pipeline.trainer.config import TrainerConfig
from tests.trainer.artifacts import regularized_artifact, small_cnn
from tests.trainer.tfrecords import example, write_split

REPO = Path(__file__).resolve().parents[2]
SimpleClusterResolver = tf.distribute.cluster_resolver.SimpleClusterResolver


@pytest.fixture(scope="module")
def replicas_run(tmp_path_factory):
    """``tests.trainer.two_replicas`` on a regularized small CNN and 16 + 8 examples."""
    workdir = tmp_path_factory.mktemp("two-replicas")
    regularized_artifact(workdir, RegularizationSpec(l2=1e-2), small_cnn())
    write_split(workdir / "train", 8)
    write_split(workdir / "eval", 4)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    with open(workdir / "run.log", "w") as log:
        process = subprocess.run(
            [sys.executable, "-m", "tests.trainer.two_replicas", str(workdir)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=1200,
        )
    assert process.returncode == 0, (workdir / "run.log").read_text()[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    with np.load(workdir / "steps.npz") as arrays:
        steps = dict(arrays)
    return workdir, results, steps


def in_cluster(cluster: dict, task_type: str, task_id: int, replicas: int = 1):
    """A stand-in for a strategy with a cluster resolver (what MultiWorkerMirroredStrategy has)."""
    resolver = SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id
    )
    return types.SimpleNamespace(cluster_resolver=resolver, num_replicas_in_sync=replicas)


def flat(steps: dict, prefix: str) -> np.ndarray:
    count = sum(key.startswith("reference_total_") for key in steps)
    return np.concatenate([steps[f"{prefix}_{i}"].ravel() for i in range(count)])


def test_the_split_cpu_gives_mirrored_strategy_two_replicas(replicas_run):
    _, results, _ = replicas_run
    assert results["logical_cpus"] == 2
    assert results["fine_tune"]["1"]["replicas"] == 1
    assert results["fine_tune"]["2"]["replicas"] == 2
    assert results["fine_tune"]["2"]["strategy"] == "MirroredStrategy"


def test_the_loss_counts_the_penalties_once(replicas_run):
    _, results, _ = replicas_run
    reference = results["reference"]
    assert reference["penalty_terms"] == 4  # 3 backbone kernels + the head's L2-SP beta
    expected = reference["data_loss"] + reference["penalty"]
    assert reference["penalty"] > 0.1 * expected  # a doubled penalty would show
    for replicas in ("1", "2"):
        step = results["steps"][replicas]
        np.testing.assert_allclose(step["evaluate_loss"], expected, rtol=1e-6)
        np.testing.assert_allclose(step["fit_loss"], expected, rtol=1e-6)


def test_one_step_applies_the_one_device_gradient(replicas_run):
    _, _, steps = replicas_run
    total, data = flat(steps, "reference_total"), flat(steps, "reference_data")
    scale = np.linalg.norm(total)
    # The penalties' share of the gradient, far above the tolerance below.
    assert np.linalg.norm(total - data) > 0.1 * scale
    for replicas in (1, 2):
        update = flat(steps, f"update_{replicas}")
        assert np.linalg.norm(update - total) <= 1e-4 * scale


def test_batchnorm_statistics_stay_fixed_on_every_replica(replicas_run):
    _, results, _ = replicas_run
    for replicas in ("1", "2"):
        assert results["steps"][replicas]["batchnorm_moved"] == []
        # train() fails the run when any moved; it checked all 3 layers' mean and variance.
        assert results["fine_tune"][replicas]["batchnorm_statistics_unchanged"] == 6


def test_fine_tuning_and_export_are_the_same_on_two_replicas(replicas_run):
    workdir, results, _ = replicas_run
    one, two = results["fine_tune"]["1"], results["fine_tune"]["2"]
    assert one["history"].keys() == two["history"].keys()
    for key, values in one["history"].items():
        np.testing.assert_allclose(two["history"][key], values, rtol=1e-5, err_msg=key)
    examples = tf.constant([example(label, i) for label in range(2) for i in range(8)])
    probabilities = {
        replicas: tf.saved_model.load(str(workdir / f"serving-{replicas}"))
        .signatures["serving_default"](examples=examples)["probabilities"]
        .numpy()
        for replicas in (1, 2)
    }
    np.testing.assert_allclose(probabilities[2], probabilities[1], atol=1e-5)
    # Not a constant model: the classes are 0.08 apart, 8,000 times the tolerance.
    assert np.ptp(probabilities[1][:, 1]) > 0.05


def test_mirrored_refuses_a_batch_the_replicas_cannot_share(replicas_run):
    _, results, _ = replicas_run
    assert results["uneven_batch_error"] == (
        "Invalid trainer setting `batch_size`. Expected a multiple of the 2 replicas of "
        "distribution='mirrored' (the global batch is split equally between them). "
        "Received: batch_size=15"
    )


def test_even_batches_drop_the_partial_batch_only_with_several_replicas():
    dataset = tf.data.Dataset.range(11).map(lambda i: (tf.zeros([3]), i)).batch(4)
    assert [len(y) for _, y in distribution.even_batches(dataset, 4, 2)] == [4, 4]
    assert [len(y) for _, y in distribution.even_batches(dataset, 4, 1)] == [4, 4, 3]


def test_workers_shard_both_splits_by_data():
    dataset = tf.data.Dataset.range(8).map(lambda i: (tf.zeros([3]), i)).batch(4)
    policy = tf.data.experimental.AutoShardPolicy
    cluster = in_cluster({"worker": ["a:1", "b:2"]}, "worker", 1, replicas=2)
    for split in distribution.replica_datasets(dataset, dataset, 4, cluster):
        assert split.options().experimental_distribute.auto_shard_policy == policy.DATA
    for split in distribution.replica_datasets(dataset, dataset, 4, tf.distribute.get_strategy()):
        assert split.options().experimental_distribute.auto_shard_policy == policy.AUTO


def test_resolve_devices_mirrors_on_every_logical_cpu_without_gpu():
    config = TrainerConfig(num_classes=2, distribution="mirrored", mixed_precision="auto")
    strategy, mixed = distribution.resolve_devices(config)
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    devices = strategy.extended.worker_devices
    assert len(devices) == len(tf.config.list_logical_devices("CPU"))
    assert all("device:CPU:" in device for device in devices)
    assert mixed is False
    default, _ = distribution.resolve_devices(TrainerConfig(num_classes=2, distribution="none"))
    assert default is tf.distribute.get_strategy()


def tf_config(cluster, task_type="worker", index=0) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


@pytest.mark.parametrize(
    "value",
    [
        None,
        "not json",
        tf_config({}),
        tf_config({"ps": ["a:1"]}, "ps"),
        tf_config({"worker": ["a:1", "b:2"]}, index=2),
        tf_config({"worker": ["a:1"]}, task_type="evaluator"),
    ],
)
def test_multi_worker_needs_a_cluster_in_tf_config(value, monkeypatch):
    if value is None:
        monkeypatch.delenv(distribution.TF_CONFIG_ENV, raising=False)
    else:
        monkeypatch.setenv(distribution.TF_CONFIG_ENV, value)
    with pytest.raises(ValueError, match="Expected TF_CONFIG to be JSON like") as error:
        distribution.resolve_devices(TrainerConfig(num_classes=2, distribution="multi_worker"))
    assert str(error.value).endswith(f"Received: TF_CONFIG={value!r}")


def test_read_tf_config_returns_the_cluster():
    value = tf_config({"chief": ["a:1"], "worker": ["b:2"]}, "worker", 0)
    assert distribution.read_tf_config({"TF_CONFIG": value})["task"]["type"] == "worker"


@pytest.mark.parametrize(
    "cluster, task_type, task_id, chief",
    [
        ({"worker": ["a:1", "b:2"]}, "worker", 0, True),
        ({"worker": ["a:1", "b:2"]}, "worker", 1, False),
        ({"chief": ["a:1"], "worker": ["b:2"]}, "chief", 0, True),
        ({"chief": ["a:1"], "worker": ["b:2"]}, "worker", 0, False),
    ],
)
def test_the_chief_is_task_chief_or_else_worker_0(cluster, task_type, task_id, chief):
    strategy = in_cluster(cluster, task_type, task_id)
    assert distribution.is_chief(strategy) is chief
    assert distribution.num_workers(strategy) == 2


def test_one_machine_is_its_own_chief():
    assert distribution.is_chief(tf.distribute.get_strategy())
    assert distribution.num_workers(tf.distribute.get_strategy()) == 1


def test_the_chief_writes_the_trainer_outputs():
    chief = in_cluster({"worker": ["a:1", "b:2"]}, "worker", 0)
    with distribution.worker_outputs(chief, "gs://b/model", "gs://b/run") as outputs:
        assert outputs == ("gs://b/model", "gs://b/run")


def test_other_workers_write_to_a_temporary_folder_they_delete(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    other = in_cluster({"worker": ["a:1", "b:2"]}, "worker", 1)
    with pytest.raises(RuntimeError, match="export failed"):
        with distribution.worker_outputs(other, "gs://b/model", "gs://b/run") as outputs:
            serving, run = outputs
            assert Path(serving).parent == Path(run).parent
            assert Path(serving).parent.parent == tmp_path
            os.makedirs(serving)
            raise RuntimeError("export failed")
    assert not os.path.exists(Path(serving).parent)
    assert list(tmp_path.iterdir()) == []


def test_the_google_cloud_extension_keys_are_not_trainer_settings():
    custom_config = {
        "num_classes": 3,
        "distribution": "multi_worker",
        "ai_platform_training_args": {"project": "p", "worker_pool_specs": [{}, {}]},
        "ai_platform_enable_vertex": True,
        "ai_platform_vertex_region": "europe-west4",
    }
    config = TrainerConfig.from_dict(distribution.trainer_settings(custom_config))
    assert (config.num_classes, config.distribution) == (3, "multi_worker")
    assert distribution.trainer_settings(None) == {}

"""distribution="multi_worker": two worker processes on 127.0.0.1, each with its TF_CONFIG.

Each worker runs ``tests.trainer.multi_worker`` (read its docstring): TFX's Trainer executor
with our ``run_fn`` on TFRecords and a regularized base artifact, as a platform that starts
one executor per worker would, or only ``run_fn``'s export path.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from backbone_regularizer.components.regularizer import RegularizationSpec
from backbone_regularizer.pipeline.trainer.distribution import KNOWN_MULTI_WORKER_ISSUES
from backbone_regularizer.pipeline.trainer.module import SUMMARY_FILE
from tests.s3_server import free_port
from tests.trainer.artifacts import regularized_artifact, small_cnn
from tests.trainer.tfrecords import example, write_split

REPO = Path(__file__).resolve().parents[2]
WORKERS = 2
TIMEOUT = 900
# What Keras 3.12.4 / TF 2.16.2 raise in fit() under MultiWorkerMirroredStrategy with more
# than one worker. 1: `_maybe_symbolic_build` passes the first (x, y) batch, a tuple, to
# `strategy.reduce(..., axis=None)`, which for several workers converts it to a tensor. 2 (once
# 1 is out of the way): `reduce_per_replica` reduces every scalar metric with `axis=0`.
KNOWN_ERRORS = (
    "ValueError: Attempt to convert a value (PerReplica:{",
    "ValueError: Invalid reduction dimension 0 for input with 0 dimensions",
)
CONFIG = dict(
    num_classes=2,
    architecture="SmallCNN",
    preprocessing="symmetric",
    batch_size=8,
    epochs=2,
    head_init="random",
    baselines=False,
    augment=False,
    mixed_precision="off",
    distribution="multi_worker",
)


class KnownUpstreamFailure(Exception):
    """A worker failed with one of ``KNOWN_ERRORS``."""


@pytest.fixture
def artifacts(tmp_path):
    """The Trainer's inputs and outputs: examples (Split-train, Split-eval), base model."""
    regularized = regularized_artifact(tmp_path, RegularizationSpec(l2=1e-3), small_cnn())
    write_split(tmp_path / "examples" / "Split-train", 8)
    write_split(tmp_path / "examples" / "Split-eval", 4)
    return {
        "examples": str(tmp_path / "examples"),
        "base_model": str(regularized),
        "model": str(tmp_path / "model"),
        "model_run": str(tmp_path / "model_run"),
        "custom_config": CONFIG,
    }


def run_cluster(mode: str, args: dict, folder: Path) -> list[tuple[int, str]]:
    """Start the workers, each with its own TF_CONFIG and TMPDIR; (exit code, log) of each."""
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(WORKERS)]}
    processes, logs = [], []
    for index in range(WORKERS):
        (folder / f"tmp-{index}").mkdir()
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": str(REPO),
            "TMPDIR": str(folder / f"tmp-{index}"),
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        }
        logs.append(folder / f"worker-{index}.log")
        with open(logs[-1], "w") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.trainer.multi_worker", mode, json.dumps(args)],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + TIMEOUT
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [(p.returncode, log.read_text()) for p, log in zip(processes, logs, strict=True)]


def check_exits(results: list[tuple[int, str]]) -> None:
    """Raise ``KnownUpstreamFailure`` when a worker failed with a known error, else assert."""
    for index, (code, log) in enumerate(results):
        if code != 0 and any(error in log for error in KNOWN_ERRORS):
            raise KnownUpstreamFailure(f"worker {index}:\n{log[-2000:]}")
        assert code == 0, f"worker {index} exited with {code}:\n{log[-3000:]}"


def serve(serving_dir: str) -> np.ndarray:
    examples = tf.constant([example(label, i) for label in range(2) for i in range(4)])
    signature = tf.saved_model.load(serving_dir).signatures["serving_default"]
    return signature(examples=examples)["probabilities"].numpy()


def no_worker_folder_left(folder: Path) -> bool:
    return not any(folder.glob("tmp-*/non-chief-worker-*"))


def test_every_worker_exports_and_only_the_chief_into_the_artifact(artifacts, tmp_path):
    check_exits(run_cluster("export", artifacts, tmp_path))
    serving = Path(artifacts["model"]) / "Format-Serving"
    assert sorted(p.name for p in serving.iterdir()) == [
        "assets",
        "fingerprint.pb",
        "model.keras",
        "saved_model.pb",
        "variables",
    ]
    assert serve(str(serving)).shape == (8, 2)
    # Worker 1 exported into a temporary folder and deleted it.
    assert (tmp_path / "tmp-1").is_dir() and no_worker_folder_left(tmp_path)


@pytest.mark.xfail(
    strict=True,
    raises=KnownUpstreamFailure,
    reason=(
        "Keras 3.12.4 with TF 2.16.2 cannot fit under MultiWorkerMirroredStrategy with more "
        "than one worker: 'ValueError: Attempt to convert a value (PerReplica:{0: <tf.Tensor "
        "...>}) with an unsupported type (<class 'tensorflow.python.distribute.values."
        "PerReplica'>) to a Tensor.' from TensorFlowTrainer._maybe_symbolic_build; behind it "
        "'ValueError: Invalid reduction dimension 0 for input with 0 dimensions' from "
        f"reduce_per_replica. Open upstream: {KNOWN_MULTI_WORKER_ISSUES}; also "
        "https://github.com/keras-team/keras/issues/20329 (dict inputs)"
    ),
)
def test_two_workers_run_the_trainer_executor_with_our_run_fn(artifacts, tmp_path):
    check_exits(run_cluster("trainer", artifacts, tmp_path))
    summary = json.loads((Path(artifacts["model_run"]) / SUMMARY_FILE).read_text())
    assert summary["strategy"] == "CollectiveAllReduceStrategy"  # MultiWorkerMirroredStrategy
    assert summary["replicas"] == WORKERS
    assert summary["epochs_run"] == 2
    probabilities = serve(str(Path(artifacts["model"]) / "Format-Serving"))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert no_worker_folder_left(tmp_path)

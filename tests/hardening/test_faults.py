"""Faults: SIGKILL mid-execution then rerun, and two pipelines running at the same time."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest
from ml_metadata.proto import metadata_store_pb2

from backbone_regularizer.components import provenance
from backbone_regularizer.components.regularizer import component_spec as reg
from backbone_regularizer.pipeline.lineage.queries import connect, custom_properties
from tests.hardening import mini_pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def big_backbone(tmp_path_factory):
    """ResNet50 at 224x224: the regularizer runs several seconds, long enough to be killed."""
    folder = tmp_path_factory.mktemp("resnet") / "backbone"
    (folder / "Format-Serving").mkdir(parents=True)
    keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3)).save(
        folder / "Format-Serving" / reg.MODEL_FILE
    )
    return str(folder)


def start(root: Path, model_dir: str) -> subprocess.Popen:
    return start_module("tests.hardening.mini_pipeline", str(root), model_dir)


def start_module(module: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def executions_of(metadata: str, node_type: str):
    store = connect(metadata)
    types = {t.id: t.name for t in store.get_execution_types()}
    return store, [e for e in store.get_executions() if types[e.type_id].endswith(node_type)]


def regularizer_executions(root: Path):
    return executions_of(mini_pipeline.metadata_path(str(root)), "BackboneRegularizer")


def live_models(store):
    models = store.get_artifacts_by_type("Model")
    return [
        m
        for m in models
        if m.state == metadata_store_pb2.Artifact.LIVE
        and reg.PROP_VALIDATION_PASSED in m.custom_properties
    ]


def wait_for_running(metadata: str, node_type: str, process, timeout: float = 240) -> None:
    """Poll ML Metadata until an execution of ``node_type`` is RUNNING (then it can be killed)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, (
            f"pipeline ended before it could be killed: {process.stderr.read()}"
        )
        if os.path.exists(metadata):
            try:
                _, executions = executions_of(metadata, node_type)
            except Exception:  # the store is being created by the other process
                executions = []
            if any(e.last_known_state == metadata_store_pb2.Execution.RUNNING for e in executions):
                return
        time.sleep(0.2)
    raise AssertionError(f"the {node_type} execution never started")


@pytest.mark.e2e
def test_sigkill_mid_execution_then_rerun_publishes_once(tmp_path, big_backbone):
    root = tmp_path / "root"
    process = start(root, big_backbone)
    wait_for_running(mini_pipeline.metadata_path(str(root)), "BackboneRegularizer", process)
    time.sleep(2.0)  # inside load/regularize/verify/save
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    store, executions = regularizer_executions(root)
    assert [e.last_known_state for e in executions] == [metadata_store_pb2.Execution.RUNNING]
    assert live_models(store) == []  # the killed execution published nothing

    rerun = start(root, big_backbone)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()
    store, executions = regularizer_executions(root)
    assert metadata_store_pb2.Execution.COMPLETE in [e.last_known_state for e in executions]
    published = live_models(store)
    assert len(published) == 1
    assert custom_properties(published[0])[reg.PROP_VALIDATION_PASSED] == 1
    uri = Path(published[0].uri)
    assert sorted(p.name for p in uri.iterdir()) == [
        "Format-Serving",
        provenance.RECORD_FILE,
        reg.REPORT_FILE,
    ]
    assert [p.name for p in (uri / "Format-Serving").iterdir()] == [reg.MODEL_FILE]


@pytest.mark.e2e
def test_two_pipelines_at_once_do_not_interfere(tmp_path, big_backbone):
    first, second = start(tmp_path / "a", big_backbone), start(tmp_path / "b", big_backbone)
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert second.wait(timeout=600) == 0, second.stderr.read()
    checksums = []
    for root in (tmp_path / "a", tmp_path / "b"):
        store, _ = regularizer_executions(root)
        (model,) = live_models(store)
        assert model.uri.startswith(str(root))
        checksums.append(custom_properties(model)[reg.PROP_WEIGHTS_SHA256])
    assert checksums[0] == checksums[1]  # same input, same weights, no cross-talk


@pytest.mark.e2e
def test_sigkill_trainer_then_rerun_publishes_one_model(tmp_path):
    from backbone_regularizer.pipeline.demo.data import write_target_span
    from tests.pipeline.test_pipeline_e2e import reduced_config

    write_target_span(tmp_path / "images", 1, per_class=12)
    metadata = reduced_config(tmp_path).metadata_path
    process = start_module("tests.hardening.full_pipeline", str(tmp_path))
    wait_for_running(metadata, "Trainer", process)
    time.sleep(2.0)  # loading the base model or training
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    store, executions = executions_of(metadata, "Trainer")
    assert [e.last_known_state for e in executions] == [metadata_store_pb2.Execution.RUNNING]
    trainer_models = [m for m in store.get_artifacts_by_type("Model") if "/Trainer/" in m.uri]
    assert [m for m in trainer_models if m.state == metadata_store_pb2.Artifact.LIVE] == []

    rerun = start_module("tests.hardening.full_pipeline", str(tmp_path))
    assert rerun.wait(timeout=900) == 0, rerun.stderr.read()
    store, executions = executions_of(metadata, "Trainer")
    assert metadata_store_pb2.Execution.COMPLETE in [e.last_known_state for e in executions]
    trainer_models = [m for m in store.get_artifacts_by_type("Model") if "/Trainer/" in m.uri]
    live = [m for m in trainer_models if m.state == metadata_store_pb2.Artifact.LIVE]
    assert len(live) == 1
    assert (Path(live[0].uri) / "Format-Serving" / "saved_model.pb").exists()
    _, pushers = executions_of(metadata, "Pusher")
    assert [e.last_known_state for e in pushers] == [metadata_store_pb2.Execution.COMPLETE]

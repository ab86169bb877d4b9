"""The compiled pipeline run end to end by KFP's own orchestrator, ``kfp.local`` (marked e2e).

kfp.local (kfp 2.17.3, in its own pinned environment) builds every ExecutorInput, passes the
artifacts and reads every executor output; only ``docker run`` becomes a local process in the
project's environment (tests/kubeflow/kfp_local_runner.py). Two runs:

* the input types as kfp.local sends them (``system.Artifact``), everything on local paths;
* the input types as the open-source KFP backend sends them (``{"instanceSchema": ""}``,
  written over what KFP built), with the images and the push destination on a real S3 server
  (moto_server): the compiled spec's container env points every step at it, and the key pair
  comes from the environment, where the cluster's secret would put it (kfp.local ignores the
  platform spec). kfp.local keeps its own pipeline root local (it calls ``os.path.abspath`` on
  it), so KFP's output artifacts stay on disk here; tests/object_store runs the local pipeline
  with its root on ``s3://``.

Everything is asserted from the pipeline root, the push destination and the executor outputs
KFP read. S3 is read with boto3 only: tensorflow-io in the pytest process would make it exit
134 (tensorflow/io#2039).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from backbone_regularizer.components.regularizer import component_spec as reg
from backbone_regularizer.pipeline.config import BackboneConfig
from backbone_regularizer.pipeline.demo.data import write_target_span
from backbone_regularizer.pipeline.kubeflow.compile import compile_pipeline
from tests.kubeflow.configs import IMAGE, cluster_config
from tests.tool_env import tool_env

RUNNER = Path(__file__).with_name("kfp_local_runner.py")
# The executors of the 10 steps.
EXECUTORS = {
    "backbone_regularizer.components.image_ingestion.executor.Executor",
    "tfx.components.statistics_gen.executor.Executor",
    "tfx.components.schema_gen.executor.Executor",
    "tfx.components.example_validator.executor.Executor",
    "backbone_regularizer.components.backbone_loader.executor.Executor",
    "backbone_regularizer.components.regularizer.executor.Executor",
    "backbone_regularizer.pipeline.trainer.executor.Executor",
    "backbone_regularizer.components.latest_pushed.evaluator.Executor",
    "tfx.components.pusher.executor.Executor",
    "backbone_regularizer.components.latest_pushed.component.LatestPushedModel_Executor",
}
TRAINER = {"num_classes": 5, "epochs": 1, "batch_size": 16, "augment": False, "patience": 1}


def run_under_kfp_local(
    root: Path,
    input_types: str,
    store=None,
    trainer: dict = TRAINER,
    retries=0,
    on_start: Callable[[int], None] | None = None,
    env_extra: dict | None = None,
) -> tuple[dict, float]:
    """Compile the reduced pipeline and run it under kfp.local; data and push on ``store``.

    ``retries``: the compiled retry policy (0: none, a failed step fails the run at once);
    ``on_start`` is called with the runner's pid, the parent of every step's process.
    """
    write_target_span(root / "images", 1, per_class=8)
    data_root, push_destination = str(root / "images"), str(root / "serving")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore", **(env_extra or {}))
    s3 = None
    if store is not None:
        prefix = f"kfp-local-{input_types}"
        data_root = store.upload_tree(root / "images", f"{prefix}/images")
        push_destination = store.uri(f"{prefix}/serving")
        env.update(store.env)
        s3 = {"endpoint": store.endpoint, "environ": store.env}
    config = cluster_config(
        pipeline_name=f"kfp-local-{input_types}",
        root=str(root / "run"),
        data_root=data_root,
        backbone=BackboneConfig(weights="none"),
        push_destination=push_destination,
        regularization={"l2": 1e-3},
        trainer=trainer,
        train_eval_ratio=(1, 1),
        min_accuracy=0.0,
        max_accuracy_drop=1.0,
        max_class_accuracy_drop=1.0,
        beam_args=("--direct_running_mode=in_memory", "--direct_num_workers=1"),
    )
    package = root / "pipeline.yaml"
    compile_pipeline(
        config,
        package,
        IMAGE,
        pipeline_root=str(root / "pipeline-root"),
        allow_local_paths=True,
        s3=s3,
        retries=retries,
    )
    env_dir = tool_env("kfp-local")
    (root / "work").mkdir()
    result_file = root / "result.json"
    started = time.monotonic()
    with open(root / "kfp-local.log", "w") as log:
        runner = subprocess.Popen(
            [
                str(env_dir / "bin" / "python"),
                str(RUNNER),
                f"--package={package}",
                f"--pipeline-root={root / 'kfp-root'}",
                f"--image={IMAGE}",
                f"--python={sys.executable}",
                f"--input-types={input_types}",
                f"--workdir={root / 'work'}",
                f"--result={result_file}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        if on_start is not None:
            on_start(runner.pid)
        try:
            runner.wait(timeout=1800)
        finally:
            runner.kill()
    seconds = time.monotonic() - started
    assert result_file.is_file(), (root / "kfp-local.log").read_text()[-6000:]
    return json.loads(result_file.read_text()), seconds


def recorded_artifacts(kfp_root: Path) -> dict[str, list[dict]]:
    """Output key -> the artifacts every task's executor output reported to KFP."""
    found: dict[str, list[dict]] = {}
    for path in sorted(kfp_root.rglob("executor_output.json")):
        for key, channel in json.loads(path.read_text()).get("artifacts", {}).items():
            found.setdefault(key, []).extend(channel["artifacts"])
    return found


def assert_full_run(root: Path, result: dict, store=None) -> None:
    log_tail = (root / "kfp-local.log").read_text()[-8000:]
    assert result["status"] == "SUCCESS", f"{result['error']}\n{log_tail}"
    assert [task["exit_code"] for task in result["tasks"]] == [0] * 10, result["tasks"]
    assert {task["executor"] for task in result["tasks"]} == EXECUTORS

    artifacts = recorded_artifacts(root / "kfp-root")
    # The regularizer's and the Trainer's outputs are both named "model".
    (regularized,) = [
        a for a in artifacts[reg.MODEL_KEY] if reg.PROP_VALIDATION_PASSED in a["metadata"]
    ]
    assert regularized["metadata"][reg.PROP_VALIDATION_PASSED] == 1
    assert regularized["metadata"][reg.PROP_REGULARIZED] == 52
    uri = Path(regularized["uri"])
    assert (uri / "Format-Serving" / reg.MODEL_FILE).is_file()
    report = json.loads((uri / reg.REPORT_FILE).read_text())
    assert report["validation"]["passed"] is True
    assert report["checksums"]["weights_sha256"] == regularized["metadata"][reg.PROP_WEIGHTS_SHA256]

    (blessing,) = artifacts["blessing"]
    assert blessing["metadata"]["blessed"] == 1
    assert (Path(blessing["uri"]) / "BLESSED").is_file()

    (pushed,) = artifacts["pushed_model"]
    assert pushed["metadata"]["pushed"] == 1
    destination = pushed["metadata"]["pushed_destination"]
    if store is None:
        assert Path(destination).parent == root / "serving"
        assert (Path(destination) / "saved_model.pb").is_file()
    else:
        prefix = destination.removeprefix(f"s3://{store.bucket}/")
        assert destination.startswith(store.uri("kfp-local-kfp-backend/serving/")), destination
        assert f"{prefix}/saved_model.pb" in store.keys(prefix=prefix)


def lineage_from_the_store(root: Path, env: dict | None = None) -> dict:
    """``backbone-reg lineage --root <kfp.local's root> --verify --json`` (no MLMD exists)."""
    cli = Path(sys.executable).with_name("backbone-reg")
    done = subprocess.run(
        [str(cli), "lineage", "--root", str(root / "kfp-root"), "--verify", "--json"],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:] + done.stdout[-2000:]
    return json.loads(done.stdout)


def assert_lineage(data: dict, run_root: Path, destination_prefix: str) -> None:
    summary = data["summary"]
    pushed = summary["pushed_model"]["pushed_destination"]
    assert pushed.startswith(destination_prefix), pushed
    assert summary["blessing"]["blessed"] is True
    assert summary["evaluation"]["metrics"]["validation_ok"] is True
    kfp_run = str(run_root / "kfp-root")
    for key in ("examples", "regularizer", "backbone"):
        assert summary[key]["uri"].startswith(kfp_run), (key, summary[key]["uri"])
    assert summary["trainer"]["model"].startswith(kfp_run)
    assert summary["examples"]["span"] == 1
    assert sum(summary["examples"]["split_counts"].values()) == 40
    assert summary["regularizer"]["properties"][reg.PROP_VALIDATION_PASSED] == 1
    assert summary["backbone"]["source"] == "keras.applications.MobileNetV2(weights=None)"
    # kfp.local: what the orchestrator gave is the task folder of each step.
    regularizer = data["tree"]["producer"]["inputs"]["model"][0]["producer"]["inputs"]
    task = regularizer["base_model"][0]["producer"]["execution_id"]
    assert task and summary["regularizer"]["uri"].startswith(f"{kfp_run}/")
    verification = data["verification"]
    assert verification["problems"] == []
    assert {item["component"] for item in verification["checked"]} == {
        "BackboneLoader",
        "BackboneRegularizer",
        "ImageExampleGen",
        "Trainer",
    }


OUR_STEPS = {"ImageExampleGen", "BackboneLoader", "BackboneRegularizer", "Trainer"}


@pytest.mark.e2e
def test_compiled_pipeline_runs_under_kfp_local(tmp_path):
    from tests.http_recorder import Recorder
    from tests.lineage.openlineage_model import round_trip

    events = Recorder()  # OpenLineage events of every step, over HTTP
    try:
        result, seconds = run_under_kfp_local(
            tmp_path, "kfp-local", env_extra={"OPENLINEAGE_URL": events.url}
        )
    finally:
        events.close()
    assert_full_run(tmp_path, result)
    print(f"kfp.local (its own input types, local paths): 10/10 steps in {seconds:.0f} s")
    assert_lineage(lineage_from_the_store(tmp_path), tmp_path, str(tmp_path / "serving"))
    received = [request["body"] for request in events.requests]
    for event in received:
        assert round_trip(event) == event
    states = {}
    for event in received:
        states.setdefault(event["job"]["name"], []).append(event["eventType"])
    assert states == dict.fromkeys([*OUR_STEPS, "latest_pushed_model"], ["START", "COMPLETE"])


@pytest.mark.e2e
def test_with_the_backends_input_types_and_data_on_s3(tmp_path, s3_server):
    result, seconds = run_under_kfp_local(tmp_path, "kfp-backend", store=s3_server)
    assert_full_run(tmp_path, result, store=s3_server)
    assert s3_server.keys(prefix="kfp-local-kfp-backend/images/span-1/")
    print(f"kfp.local (backend input types, data on s3://): 10/10 steps in {seconds:.0f} s")
    data = lineage_from_the_store(tmp_path, s3_server.env)
    assert_lineage(data, tmp_path, s3_server.uri("kfp-local-kfp-backend/serving/"))

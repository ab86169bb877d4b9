"""The compiled pipeline run end to end by KFP's own orchestrator, ``kfp.local`` (marked e2e).

kfp.local (kfp 2.17.3, in its own pinned environment) builds every ExecutorInput, passes the
artifacts and reads every executor output; only ``docker run`` becomes a local process in the
project's environment (tests/kubeflow/kfp_local_runner.py). Two runs: the input types as
kfp.local sends them (``system.Artifact``), and as the open-source KFP backend sends them
(``{"instanceSchema": ""}``, written over what KFP built). Everything is asserted from the
pipeline root and the push destination.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.regularizer import component_spec as reg
from pipeline.config import BackboneConfig
from pipeline.demo_data import write_target_span
from pipeline.kubeflow import compile_pipeline
from tests.kubeflow.configs import IMAGE, cluster_config
from tests.tool_env import tool_env

RUNNER = Path(__file__).with_name("kfp_local_runner.py")
# The executors of the 10 steps.
EXECUTORS = {
    "components.image_ingestion.executor.Executor",
    "tfx.components.statistics_gen.executor.Executor",
    "tfx.components.schema_gen.executor.Executor",
    "tfx.components.example_validator.executor.Executor",
    "components.backbone_loader.executor.Executor",
    "components.regularizer.executor.Executor",
    "tfx.components.trainer.executor.GenericExecutor",
    "tfx.components.evaluator.executor.Executor",
    "tfx.components.pusher.executor.Executor",
    "pipeline.baseline.LatestPushedModel_Executor",
}
TRAINER = {"num_classes": 5, "epochs": 1, "batch_size": 16, "augment": False, "patience": 1}


def run_under_kfp_local(root: Path, input_types: str) -> tuple[dict, float]:
    """Compile the reduced pipeline on local paths and run it under kfp.local."""
    write_target_span(root / "images", 1, per_class=8)
    config = cluster_config(
        pipeline_name=f"kfp-local-{input_types}",
        root=str(root / "run"),
        data_root=str(root / "images"),
        backbone=BackboneConfig(weights="none"),
        push_destination=str(root / "serving"),
        regularization={"l2": 1e-3},
        trainer=TRAINER,
        train_eval_ratio=(1, 1),
        min_accuracy=0.0,
        max_accuracy_drop=1.0,
        beam_args=("--direct_running_mode=in_memory", "--direct_num_workers=1"),
    )
    package = root / "pipeline.yaml"
    compile_pipeline(
        config, package, IMAGE, pipeline_root=str(root / "pipeline-root"), allow_local_paths=True
    )
    env_dir = tool_env("kfp-local")
    (root / "work").mkdir()
    result_file = root / "result.json"
    started = time.monotonic()
    with open(root / "kfp-local.log", "w") as log:
        subprocess.run(
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
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore"),
            timeout=1800,
            check=False,
        )
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


def assert_full_run(root: Path, result: dict) -> None:
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
    destination = Path(pushed["metadata"]["pushed_destination"])
    assert destination.parent == root / "serving"
    assert (destination / "saved_model.pb").is_file()


@pytest.mark.e2e
@pytest.mark.parametrize("input_types", ["kfp-local", "kfp-backend"])
def test_compiled_pipeline_runs_under_kfp_local(tmp_path, input_types):
    result, seconds = run_under_kfp_local(tmp_path, input_types)
    assert_full_run(tmp_path, result)
    print(f"kfp.local ({input_types} input types): 10/10 steps in {seconds:.0f} s")

"""Steps killed with SIGKILL from outside and retried by KFP's own orchestrator (marked e2e).

The compiled pipeline (reduced config, with a retry policy) runs under kfp.local 2.17.3, which
honours ``retryPolicy`` (kfp/local/orchestrator/task_executor.py) and gives a retried task the
same output URIs, as a cluster does (kubeflow/pipelines#13175). During one run two processes
are killed from outside (tests/kubeflow/killer.py), at moments read from their output folders:

* BackboneRegularizer, when its output folder shows the publish staging folder: it dies while
  writing the artifact. The retry must publish a complete artifact of its own.
* the Trainer, once its checkpoint says the first epoch is done: it dies in its second epoch.
  The retry must resume from epoch 1, finish, export a complete model that gets pushed, and
  say in training_summary.json that one attempt was interrupted and the next resumed.

One run serves both (a pipeline run costs minutes here). Everything is asserted from what
kfp.local recorded, the output folders and the push destination.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest

from backbone_regularizer.components import model_artifact, provenance
from backbone_regularizer.components.regularizer import component_spec as reg
from backbone_regularizer.pipeline.kubeflow.retries import RetryPolicy
from backbone_regularizer.pipeline.trainer import checkpoint
from backbone_regularizer.pipeline.trainer.module import SUMMARY_FILE
from tests.kubeflow.killer import Killer, output_uri
from tests.kubeflow.test_kfp_local import (
    EXECUTORS,
    TRAINER,
    recorded_artifacts,
    run_under_kfp_local,
)

REGULARIZER = "backbone_regularizer.components.regularizer.executor.Executor"
# The pipeline's Trainer: TFX's GenericExecutor, told the Examples' label vocabulary.
TRAINER_EXECUTOR = "backbone_regularizer.pipeline.trainer.executor.Executor"
# Three fine-tuning epochs, none stopped early: the second one is where the kill lands.
RETRIED_TRAINER = {**TRAINER, "epochs": 3, "patience": 3}
# One retry of every step, at once (the defaults wait 60 s, 120 s, ...).
RETRIES = RetryPolicy(retries=1, trainer_retries=1, backoff_seconds=0)


def publishing(invocation: dict):
    """The regularizer's output folder once a file shows in its staging folder (the publish
    is copying the new files in): what it holds then."""
    uri = Path(output_uri(invocation, reg.MODEL_KEY))
    staging = uri / model_artifact.STAGING_DIR
    if staging.exists() and any(p.is_file() for p in staging.rglob("*")):
        return sorted(str(p.relative_to(uri)) for p in uri.rglob("*"))
    return None


def in_second_epoch(invocation: dict):
    """The Trainer's checkpoint state once it records the first epoch done."""
    state = Path(output_uri(invocation, "model_run")) / checkpoint.CHECKPOINT_DIR / "state.json"
    try:
        data = json.loads(state.read_text())
    except (OSError, ValueError):  # not there yet, or being renamed into place
        return None
    return data if data["epochs"] >= 1 else None


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("kfp-local-retries")
    killers = []

    def start_killers(runner_pid: int) -> None:
        killers.extend(
            [
                Killer(runner_pid, REGULARIZER, publishing),
                Killer(runner_pid, TRAINER_EXECUTOR, in_second_epoch),
            ]
        )
        for killer in killers:
            killer.start()

    try:
        result, seconds = run_under_kfp_local(
            root, "kfp-local", trainer=RETRIED_TRAINER, retries=RETRIES, on_start=start_killers
        )
    finally:
        for killer in killers:
            killer.stop()
            killer.join(10)
    tasks = len(result["tasks"])
    print(f"kfp.local with two steps killed and retried: {tasks} tasks in {seconds:.0f} s")
    for killer in killers:
        assert killer.error is None, killer.error
    regularizer, trainer = (killer.kill for killer in killers)
    print(f"the regularizer was killed with {regularizer and regularizer.seen} in its folder")
    print(f"the Trainer was killed with its checkpoint at {trainer and trainer.seen['epochs']}")
    log = (root / "kfp-local.log").read_text()[-8000:]
    assert regularizer is not None, f"the regularizer was never seen publishing\n{log}"
    assert trainer is not None, f"the Trainer never reached its second epoch\n{log}"
    return root, result, regularizer, trainer


@pytest.mark.e2e
def test_the_run_completes_with_one_retry_of_each_killed_step(killed_run):
    root, result, _, _ = killed_run
    assert result["status"] == "SUCCESS", result["error"]
    codes = [(task["executor"], task["exit_code"]) for task in result["tasks"]]
    killed = [(REGULARIZER, -9), (REGULARIZER, 0), (TRAINER_EXECUTOR, -9), (TRAINER_EXECUTOR, 0)]
    assert [c for c in codes if c[0] in (REGULARIZER, TRAINER_EXECUTOR)] == killed
    assert all(code == 0 for executor, code in codes if executor not in dict(killed))
    assert {executor for executor, _ in codes} == EXECUTORS
    assert len(codes) == 12
    (pushed,) = recorded_artifacts(root / "kfp-root")["pushed_model"]
    assert pushed["metadata"]["pushed"] == 1
    destination = Path(pushed["metadata"]["pushed_destination"])
    assert (destination / "saved_model.pb").is_file()
    assert keras.saving.load_model(destination / "model.keras", compile=False).count_params()


@pytest.mark.e2e
def test_the_regularizer_killed_while_publishing_is_published_whole_by_its_retry(killed_run):
    root, _, kill, _ = killed_run
    uri = Path(output_uri(kill.invocation, reg.MODEL_KEY))
    # It died while its staging folder held part of the new files.
    assert any(p.startswith(f"{model_artifact.STAGING_DIR}/") for p in kill.seen), kill.seen
    files = sorted(str(p.relative_to(uri)) for p in uri.rglob("*") if p.is_file())
    assert files == ["Format-Serving/model.keras", provenance.RECORD_FILE, reg.REPORT_FILE]
    record = provenance.read_record(str(uri / provenance.RECORD_FILE))
    assert provenance.verify_files(str(uri), record["artifact"]["files"]) == []  # this attempt's
    (recorded,) = [
        a
        for a in recorded_artifacts(root / "kfp-root")[reg.MODEL_KEY]
        if reg.PROP_VALIDATION_PASSED in a["metadata"]
    ]
    assert recorded["uri"] == str(uri)  # the retry wrote where the killed attempt did
    report = json.loads((uri / reg.REPORT_FILE).read_text())
    assert report["validation"]["passed"] is True
    assert report["checksums"]["weights_sha256"] == recorded["metadata"][reg.PROP_WEIGHTS_SHA256]
    model = keras.saving.load_model(uri / "Format-Serving" / "model.keras")
    assert len(model.losses) == recorded["metadata"][reg.PROP_REGULARIZED] == 52


@pytest.mark.e2e
def test_the_trainer_killed_in_its_second_epoch_resumes_and_says_so(killed_run):
    _, _, _, kill = killed_run
    assert kill.seen["epochs"] == 1  # killed after epoch 1's checkpoint, before epoch 2's
    run_dir = Path(output_uri(kill.invocation, "model_run"))
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    first, second = summary["attempts"]
    assert first["outcome"] == "interrupted"
    assert first["epochs_completed_before_interruption"] == 1
    assert first["resumed_from_epoch"] is None
    assert second["outcome"] == "completed"
    assert second["resumed_from_epoch"] == 1
    assert summary["epochs_run"] == 3
    assert len(summary["history"]["loss"]) == 3
    assert not (run_dir / checkpoint.CHECKPOINT_DIR).exists()  # removed once exported
    model_dir = Path(output_uri(kill.invocation, "model")) / "Format-Serving"
    assert (model_dir / "saved_model.pb").is_file()
    assert not (model_dir / model_artifact.STAGING_DIR).exists()

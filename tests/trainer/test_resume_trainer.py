"""A Trainer killed with SIGKILL and run again resumes, and ends where an uninterrupted run
ends (marked e2e).

Each run is TFX's Trainer executor with our ``run_fn`` in its own process
(``python -m tests.trainer.multi_worker trainer``, no ``TF_CONFIG``), as a pod runs it, on
examples and an L2-SP regularized base written by the test. Run A is uninterrupted. Run B is
killed from outside once its checkpoint records the warm-up epoch and the first fine-tuning
epoch (so during the third epoch), then started again with the same arguments, as a KFP
retry would. B must resume after the checkpointed epoch, and match A: the same epochs, the
same best epoch, the per-epoch metrics and the exported model's outputs within
``TOLERANCE`` (CPU kernels may sum in another order from one process to the next).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from backbone_regularizer.components.regularizer import RegularizationSpec
from backbone_regularizer.pipeline.trainer import checkpoint
from backbone_regularizer.pipeline.trainer.module import SUMMARY_FILE
from tests.trainer.artifacts import regularized_artifact, small_cnn
from tests.trainer.tfrecords import write_split

REPO = Path(__file__).resolve().parents[2]
CONFIG = {
    "num_classes": 2,
    "epochs": 4,
    "warmup_epochs": 1,
    "patience": 10,
    "batch_size": 8,
    "augment": True,  # random per-epoch choices: the resumed epochs must make the same ones
    "distribution": "none",
    "mixed_precision": "off",
}
KILL_AFTER = 2  # epochs in the checkpoint: the warm-up and one fine-tuning epoch
# Largest difference allowed between the two runs' metrics and model outputs (measured: see
# docs/retries.md).
TOLERANCE = 1e-5


def run_trainer(args: dict, kill_after: int | None = None) -> dict | None:
    """Run the Trainer's executor in a process; with ``kill_after``, SIGKILL it once its
    checkpoint has that many epochs and return that state."""
    command = [sys.executable, "-m", "tests.trainer.multi_worker", "trainer", json.dumps(args)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    env.pop("TF_CONFIG", None)
    Path(args["model_run"]).parent.mkdir(parents=True, exist_ok=True)
    log = open(Path(args["model_run"]).with_suffix(".log"), "a")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    state = Path(args["model_run"]) / checkpoint.CHECKPOINT_DIR / checkpoint.STATE_FILE
    seen = None
    while process.poll() is None and kill_after is not None and seen is None:
        try:
            data = json.loads(state.read_text())
        except (OSError, ValueError):
            data = None
        if data and data["epochs"] >= kill_after:
            process.send_signal(signal.SIGKILL)
            seen = data
        time.sleep(0.002)
    code = process.wait(timeout=900)
    log.close()
    if kill_after is None:
        assert code == 0, Path(log.name).read_text()[-5000:]
        return None
    assert code == -signal.SIGKILL, f"not killed ({code}):\n{Path(log.name).read_text()[-3000:]}"
    return seen


def artifacts(root: Path, name: str, examples: Path, base: Path) -> dict:
    return {
        "examples": str(examples),
        "base_model": str(base),
        "model": str(root / name / "model"),
        "model_run": str(root / name / "model_run"),
        "custom_config": CONFIG,
    }


def outputs(serving: Path) -> np.ndarray:
    """The exported classifier's outputs on fixed inputs."""
    model = keras.saving.load_model(serving / "model.keras", compile=False)
    inputs = np.random.default_rng(0).uniform(-1, 1, (24, 32, 32, 3)).astype("float32")
    return model.predict(inputs, verbose=0)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    examples = root / "examples"
    write_split(examples / "Split-train", 40)
    write_split(examples / "Split-eval", 12)
    base = regularized_artifact(root, RegularizationSpec(l2_sp=0.01), small_cnn())
    started = time.monotonic()
    run_trainer(artifacts(root, "a", examples, base))
    seconds_a = time.monotonic() - started
    b = artifacts(root, "b", examples, base)
    started = time.monotonic()
    seen = run_trainer(b, kill_after=KILL_AFTER)
    run_trainer(b)
    seconds_b = time.monotonic() - started
    print(f"uninterrupted Trainer {seconds_a:.0f} s; killed + resumed {seconds_b:.0f} s")
    summaries = [
        json.loads((root / name / "model_run" / SUMMARY_FILE).read_text()) for name in "ab"
    ]
    return root, examples, seen, summaries


@pytest.mark.e2e
def test_the_killed_trainer_resumes_after_its_last_checkpointed_epoch(two_runs):
    root, _, seen, (_, resumed) = two_runs
    assert seen["epochs"] == KILL_AFTER and seen["phase"] == "fine-tuning"
    first, second = resumed["attempts"]
    assert (first["outcome"], first["epochs_completed_before_interruption"]) == (
        "interrupted",
        KILL_AFTER,
    )
    assert (second["outcome"], second["resumed_from_epoch"]) == ("completed", KILL_AFTER)
    assert not (root / "b" / "model_run" / checkpoint.CHECKPOINT_DIR).exists()


@pytest.mark.e2e
def test_the_resumed_run_ends_where_the_uninterrupted_one_does(two_runs):
    root, examples, _, (uninterrupted, resumed) = two_runs
    for key in ("epochs_run", "best_epoch", "best", "baselines", "start"):
        assert resumed[key] == uninterrupted[key], key
    assert uninterrupted["epochs_run"] == 5  # 1 warm-up + 4 fine-tuning: none stopped early
    assert resumed["history"].keys() == uninterrupted["history"].keys()
    for key, values in uninterrupted["history"].items():
        np.testing.assert_allclose(resumed["history"][key], values, rtol=0, atol=TOLERANCE)
    for key in ("best_val_crossentropy", "val_accuracy_at_best", "penalty_at_end"):
        assert resumed[key] == pytest.approx(uninterrupted[key], abs=TOLERANCE), key
    a, b = (outputs(root / name / "model" / "Format-Serving") for name in "ab")
    np.testing.assert_allclose(b, a, rtol=0, atol=TOLERANCE)

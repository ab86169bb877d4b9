"""The run report's threshold table, recomputed from metrics (no pipeline run)."""

import pytest

from pipeline.run_report import evaluation_checks


def _evaluation(candidate, baseline=None):
    metrics = {"candidate": {"sparse_categorical_accuracy": candidate}}
    if baseline is not None:
        metrics["baseline"] = {"sparse_categorical_accuracy": baseline}
    return {"metrics": metrics, "validation_ok": True}


def test_accuracy_passes_but_the_drop_vs_baseline_fails():
    accuracy, change = evaluation_checks(_evaluation(0.70, 0.75), 0.6, 0.02)
    assert accuracy["passed"] is True and accuracy["value"] == 0.70
    assert change["value"] == pytest.approx(-0.05)
    assert change["passed"] is False
    assert change["threshold"] == ">= -0.02 (max_accuracy_drop 0.02)"


def test_below_the_absolute_threshold():
    accuracy, change = evaluation_checks(_evaluation(0.5, 0.5), 0.6, 0.02)
    assert accuracy["passed"] is False and change["passed"] is True


def test_missing_baseline_is_not_a_pass():
    _, change = evaluation_checks(_evaluation(0.9), 0.6, 0.02)
    assert change["value"] is None and change["passed"] is None

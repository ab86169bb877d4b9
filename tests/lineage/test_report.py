"""The run report's threshold table, recomputed from metrics (no pipeline run)."""

import pytest

from backbone_regularizer.pipeline.lineage.report import _baselines_section, evaluation_checks
from backbone_regularizer.pipeline.lineage.summary import comparison


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


def _with_baselines(candidate=None):
    summary = {
        "training": {
            "val_accuracy_at_best": 0.8,
            "baselines": {
                "pixels_logistic_regression": {
                    "eval_accuracy": 0.9,
                    "eval_examples": 195,
                    "train_examples": 105,
                },
                "linear_probe": {
                    "eval_accuracy": 0.92,
                    "eval_examples": 195,
                    "train_examples": 105,
                },
            },
        }
    }
    if candidate is not None:
        summary["evaluation"] = _evaluation(candidate)
    return summary


def test_comparison_puts_the_evaluator_accuracy_beside_the_baselines():
    rows = comparison(_with_baselines(0.95))
    assert [r["model"] for r in rows] == [
        "fine-tuned (Evaluator)",
        "pixel logistic regression",
        "linear probe (frozen backbone)",
    ]
    assert [r["accuracy"] for r in rows] == [0.95, 0.9, 0.92]
    assert rows[0]["eval_examples"] == 195 and rows[0]["train_examples"] == 105
    section = "\n".join(_baselines_section(_with_baselines(0.95)))
    assert "| linear probe (frozen backbone) | 0.92 | +0.030 | 195 | 105 |" in section


def test_comparison_falls_back_to_the_trainer_and_to_nothing():
    assert comparison(_with_baselines())[0] == {
        "model": "fine-tuned (Trainer)",
        "accuracy": 0.8,
        "eval_examples": 195,
        "train_examples": 105,
    }
    assert comparison({"training": {"baselines": None}}) == []
    assert "No baselines" in "\n".join(_baselines_section({}))


def test_baselines_on_a_sample_show_n_of_the_split():
    summary = _with_baselines(0.95)
    for entry in summary["training"]["baselines"].values():
        entry.update(eval_examples=2000, train_examples=2000)
        entry.update(eval_split_examples=9000, train_split_examples=21000)
    rows = comparison(summary)
    assert rows[0]["eval_examples"] == 9000 and rows[0]["train_examples"] == 21000
    section = "\n".join(_baselines_section(summary))
    assert "| linear probe (frozen backbone) | 0.92 | +0.030 | 2000 of 9000 | 2000 of 21000 |" in (
        section
    )

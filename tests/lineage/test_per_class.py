"""Labels, spans and the per-class guard as the summary and the report show them."""

import json

from backbone_regularizer.pipeline.lineage import per_class
from backbone_regularizer.pipeline.lineage.summary import format_summary

ACC = "sparse_categorical_accuracy"


def _summary(compares=1, missing=("0",), failed=("label:2",), drop=0.1):
    def model(candidate, baseline, count):
        return {
            "candidate": {ACC: candidate, "example_count": count},
            "baseline": {ACC: baseline, "example_count": count},
        }

    return {
        "pipeline": "p",
        "nodes": {"ImageExampleGen": "COMPLETE"},
        "max_class_accuracy_drop": drop,
        "examples": {
            "span": 2,
            "spans": "[1,2]",
            "count_train": 40,
            "count_eval": 20,
            "count_holdout": 9,
            "label_source": "config `labels`",
            "labels_added": "[]",
            "label_map": '{"digit_5":0,"digit_6":1,"digit_7":2}',
            "class_counts": json.dumps(
                {
                    "digit_5": {"train": 0, "eval": 0, "holdout": 3},
                    "digit_6": {"train": 20, "eval": 10, "holdout": 3},
                    "digit_7": {"train": 20, "eval": 10, "holdout": 3},
                }
            ),
        },
        "baseline": {"compares_production": compares, "comparison": "production (same)"},
        "evaluation": {
            "metrics": {"candidate": {ACC: 0.9, "example_count": 20}},
            "by_label": {"1": model(0.95, 0.9, 10), "2": model(0.6, 0.9, 10)},
            "by_span": {"-1": model(0.7, 0.8, 9), "2": model(0.8, 0.9, 20)},
            "validation_ok": False,
            "failures": [
                {"slice": s, "metric": ACC, "change": True, "value": -0.3} for s in failed
            ],
            "missing_slices": [{"featureValues": {"label": m}} for m in missing],
        },
        "blessed": False,
    }


def test_class_rows_follow_tfmas_verdicts():
    rows = per_class.class_rows(_summary())
    assert [(r["class"], r["train"], r["holdout"], r["verdict"]) for r in rows] == [
        ("digit_5", 0, 3, "refused: no eval examples"),
        ("digit_6", 20, 3, "ok"),
        ("digit_7", 20, 3, "refused: lost -0.300"),
    ]
    assert rows[1]["baseline"] == 0.9 and rows[1]["candidate"] == 0.95


def test_without_a_comparison_nothing_is_guarded():
    rows = per_class.class_rows(_summary(compares=0, missing=(), failed=()))
    assert [r["verdict"] for r in rows] == ["no eval examples", "not guarded", "not guarded"]


def test_summary_lines():
    text = format_summary(_summary())
    assert "  data: spans [1, 2], 40 train, 20 eval, 9 holdout" in text
    assert "labels (config `labels`): 0=digit_5, 1=digit_6, 2=digit_7" in text
    assert "images per class (train/eval/holdout): digit_5 0/0/3, digit_6 20/10/3" in text
    assert "no training images of: digit_5" in text
    assert "    comparison: production (same)" in text
    assert (
        "per class (production -> candidate): digit_5 no eval examples, digit_6 0.900 -> " in text
    )
    assert (
        "per-class guard (max drop 0.1) refuses: digit_5 (no eval examples), digit_7 (lost" in text
    )


def test_span_rows_name_the_holdout():
    rows = per_class.span_rows(_summary())
    assert [(r["span"], r["examples"], r["candidate"]) for r in rows] == [
        ("holdout", 9, 0.7),
        ("2", 20, 0.8),
    ]

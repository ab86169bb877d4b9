"""Labels, spans and the per-class guard of a run, as rows for the summary and the report.

Reads what ``summary.collect`` gathered: the Examples' label vocabulary and counts
(``examples``), the Evaluator's metrics per label and per span slice and its validation
failures (``evaluation``), and what the baseline was (``baseline``).

>>> [(r["class"], r["verdict"]) for r in class_rows(collect(config))][:2]
[('digit_5', 'refused: no eval examples'), ('digit_6', 'ok')]
"""

from __future__ import annotations

import json

from backbone_regularizer.components.image_ingestion.images import HOLDOUT_SPAN, LABEL_KEY
from backbone_regularizer.components.image_ingestion.labels import names

ACCURACY = "sparse_categorical_accuracy"
COUNT = "example_count"
NO_EXAMPLES = "no eval examples"
REFUSED = "refused"


def _json(value, default):
    if not isinstance(value, str):
        return default
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return default


def vocabulary(summary: dict) -> dict[str, int]:
    """The run's label vocabulary (the Examples'), or {}."""
    return _json((summary.get("examples") or {}).get("label_map"), {}) or {}


def _guarded(summary: dict) -> bool:
    return bool((summary.get("baseline") or {}).get("compares_production"))


def class_rows(summary: dict) -> list[dict]:
    """One row per class of the vocabulary: image files per split, accuracy of the baseline and
    the candidate on its evaluation examples, the change, and the guard's verdict as TFMA
    validated it.

    ``verdict``: ``"refused: lost <change>"`` (a failed per-class change threshold),
    ``"refused: no eval examples"`` (a class production knew, required and missing),
    ``"ok"`` (guarded and passed), ``"no eval examples"`` or ``"not guarded"`` (no comparison
    with production, or the guard is off).
    """
    label_map = vocabulary(summary)
    counts = _json((summary.get("examples") or {}).get("class_counts"), {}) or {}
    evaluation = summary.get("evaluation") or {}
    by_label = evaluation.get("by_label", {})
    failed = {f["slice"] for f in evaluation.get("failures", []) if f.get("change")}
    missing = {
        s.get("featureValues", {}).get(LABEL_KEY) for s in evaluation.get("missing_slices", [])
    }
    guarded = _guarded(summary) and summary.get("max_class_accuracy_drop") is not None
    rows = []
    for name in names(label_map):
        index = label_map[name]
        metrics = by_label.get(str(index), {})
        candidate = metrics.get("candidate", {}).get(ACCURACY)
        baseline = metrics.get("baseline", {}).get(ACCURACY)
        change = None if candidate is None or baseline is None else candidate - baseline
        if f"{LABEL_KEY}:{index}" in failed:
            verdict = f"{REFUSED}: lost {change:+.3f}" if change is not None else REFUSED
        elif str(index) in missing and candidate is None:
            verdict = f"{REFUSED}: {NO_EXAMPLES}"
        elif candidate is None:
            verdict = NO_EXAMPLES
        else:
            verdict = "ok" if guarded else "not guarded"
        split_counts = counts.get(name, {})
        rows.append(
            {
                "class": name,
                "label": index,
                "train": split_counts.get("train"),
                "eval": split_counts.get("eval"),
                "holdout": split_counts.get("holdout"),
                "examples": metrics.get("candidate", {}).get(COUNT),
                "baseline": baseline,
                "candidate": candidate,
                "change": change,
                "verdict": verdict,
            }
        )
    return rows


def span_rows(summary: dict) -> list[dict]:
    """Accuracy per span slice of the evaluation data (the holdout is span -1)."""
    rows = []
    for span, metrics in sorted(
        (summary.get("evaluation") or {}).get("by_span", {}).items(), key=lambda kv: int(kv[0])
    ):
        rows.append(
            {
                "span": "holdout" if int(span) == HOLDOUT_SPAN else span,
                "examples": metrics.get("candidate", {}).get(COUNT),
                "baseline": metrics.get("baseline", {}).get(ACCURACY),
                "candidate": metrics.get("candidate", {}).get(ACCURACY),
            }
        )
    return rows


def data_lines(summary: dict) -> list[str]:
    """Console lines: spans, vocabulary (and where it came from), per-class image counts."""
    examples = summary.get("examples")
    if not examples:
        return []
    label_map = vocabulary(summary)
    spans = _json(examples.get("spans"), None)
    counts = _json(examples.get("class_counts"), {}) or {}
    splits = [s for s in ("train", "eval", "holdout") if f"count_{s}" in examples]
    lines = [
        f"  data: spans {spans if spans is not None else examples.get('span')}, "
        + ", ".join(f"{examples.get(f'count_{s}')} {s}" for s in splits)
    ]
    added = _json(examples.get("labels_added"), []) or []
    lines.append(
        f"    labels ({examples.get('label_source', 'unknown source')}): "
        + ", ".join(f"{label_map[n]}={n}" for n in names(label_map))
        + (f"; added by grow_labels: {added}" if added else "")
    )
    if counts:
        lines.append(
            f"    images per class ({'/'.join(splits)}): "
            + ", ".join(
                f"{n} " + "/".join(str(counts.get(n, {}).get(s, 0)) for s in splits)
                for n in names(label_map)
            )
        )
        missing = [n for n in names(label_map) if not counts.get(n, {}).get("train")]
        if missing:
            lines.append(f"    no training images of: {', '.join(missing)}")
    return lines


def guard_lines(summary: dict) -> list[str]:
    """Console lines: what the baseline was, then the per-class comparison and its refusals."""
    baseline = summary.get("baseline") or {}
    lines = [f"    comparison: {baseline.get('comparison', 'n/a')}"]
    rows = class_rows(summary)
    if rows and summary.get("evaluation"):
        title = "per class (production -> candidate)" if _guarded(summary) else "per class"
        cells = []
        for row in rows:
            if row["candidate"] is None:
                cells.append(f"{row['class']} {NO_EXAMPLES}")
            elif _guarded(summary):
                cells.append(f"{row['class']} {row['baseline']:.3f} -> {row['candidate']:.3f}")
            else:
                cells.append(f"{row['class']} {row['candidate']:.3f}")
        lines.append(f"    {title}: " + ", ".join(cells))
        refused = [r for r in rows if r["verdict"].startswith(REFUSED)]
        if refused:
            drop = summary.get("max_class_accuracy_drop")
            lines.append(
                f"    per-class guard (max drop {drop:g}) refuses: "
                + ", ".join(f"{r['class']} ({r['verdict'][len(REFUSED) + 2 :]})" for r in refused)
            )
    return lines

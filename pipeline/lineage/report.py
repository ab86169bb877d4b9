"""A Markdown report of the latest local run, with its pictures, under ``<root>/reports``.

    path = write_run_report(PipelineConfig())   # runs/demo/reports/run-20261127T074830.md

Sections: run (nodes and their states), regularization coverage (chart from the regularized
model found through ML Metadata), training (curves copied from the Trainer's ``model_run``),
evaluation against the thresholds and the baseline, the fine-tuned model beside the pixel and
linear-probe baselines on the same split, blessing and push, and the lineage tree of what was
pushed. PNGs are copied next to the report and linked by relative name, so the
folder can be moved or attached as a whole.
"""

from __future__ import annotations

import os
import re
import tempfile

from tfx.dsl.io import fileio

from backbone_regularizer.components import model_artifact
from backbone_regularizer.components.regularizer import component_spec as reg
from backbone_regularizer.components.regularizer.coverage_plot import write_audit_plot
from backbone_regularizer.components.regularizer.keras_file import load_keras_model
from backbone_regularizer.pipeline.config import PipelineConfig
from backbone_regularizer.pipeline.lineage.facts import lineage_summary
from backbone_regularizer.pipeline.lineage.format import format_lineage
from backbone_regularizer.pipeline.lineage.graph import lineage
from backbone_regularizer.pipeline.lineage.queries import connect, latest_run
from backbone_regularizer.pipeline.lineage.summary import collect, comparison
from backbone_regularizer.pipeline.trainer.module import CURVES_FILE

REPORTS_DIR = "reports"
ACCURACY_METRIC = "sparse_categorical_accuracy"
COVERAGE_SUFFIX = "coverage.png"
CURVES_SUFFIX = "training_curves.png"
_LINEAGE_ROOTS = (
    ("Pusher", "pushed_model"),
    ("Trainer", "model"),
    ("BackboneRegularizer", "model"),
)


def evaluation_checks(evaluation: dict, min_accuracy: float, max_accuracy_drop: float) -> list:
    """The Evaluator's two thresholds, recomputed from the metrics for the report.

    ``accuracy >= min_accuracy`` and ``accuracy - baseline_accuracy >= -max_accuracy_drop``.

    Returns:
        Rows ``{"check", "value", "threshold", "passed"}``; ``passed`` is None when a metric
        is missing.
    """
    metrics = evaluation.get("metrics", {})
    candidate = metrics.get("candidate", {}).get(ACCURACY_METRIC)
    baseline = metrics.get("baseline", {}).get(ACCURACY_METRIC)
    rows = [
        {
            "check": "accuracy",
            "value": candidate,
            "threshold": f">= {min_accuracy:g} (min_accuracy)",
            "passed": None if candidate is None else candidate >= min_accuracy,
        }
    ]
    change = None if candidate is None or baseline is None else candidate - baseline
    rows.append(
        {
            "check": "accuracy change vs baseline",
            "value": change,
            "threshold": f">= {-max_accuracy_drop:g} (max_accuracy_drop {max_accuracy_drop:g})",
            "passed": None if change is None else change >= -max_accuracy_drop,
        }
    )
    return rows


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def _run_name(store, nodes) -> str:
    for node in nodes.values():
        for context in store.get_contexts_by_execution(node.execution_id):
            if context.type == "pipeline_run":
                return context.name
    return "unknown"


def _lineage_root(nodes):
    for node_id, key in _LINEAGE_ROOTS:
        if node_id in nodes and nodes[node_id].outputs.get(key):
            return nodes[node_id].outputs[key][0]
    return None


def _coverage_section(regularizer: dict | None, config, stem, report_dir, tmp) -> list[str]:
    lines = ["## Regularization coverage", ""]
    if not regularizer:
        return lines + ["No BackboneRegularizer output in this run's lineage.", ""]
    props = regularizer["properties"]
    serving = model_artifact.serving_dir(regularizer["uri"])
    model_uri = model_artifact.model_uri(serving)
    model = load_keras_model(
        model_artifact.fetch_model(serving, tmp, role="regularized model"),
        safe_mode=config.safe_mode,
        custom_modules=config.custom_modules,
    )
    image = f"{stem}-{COVERAGE_SUFFIX}"
    local_png = os.path.join(tmp, image)
    counts = write_audit_plot(model, local_png)
    fileio.copy(local_png, os.path.join(report_dir, image), overwrite=True)
    lines += [
        f"Regularized model `{model_uri}` (artifact {regularizer['artifact_id']}, "
        f"{regularizer['node']} execution {regularizer['execution_id']}): "
        f"{props.get(reg.PROP_REGULARIZER)} on {props.get(reg.PROP_REGULARIZED)} weights "
        f"({props.get(reg.PROP_REGULARIZED_FROZEN)} frozen), {props.get(reg.PROP_SKIPPED)} "
        f"skipped; validation passed: {_fmt(bool(props.get(reg.PROP_VALIDATION_PASSED)))}; "
        f"penalty at init {_fmt(props.get(reg.PROP_PENALTY))}.",
        "",
        f"![regularization coverage]({image})",
        "",
    ]
    lines += _table(
        ["weight kind", "regularized", "missed", "not targeted"],
        [[kind, *row.values()] for kind, row in counts.items()],
    )
    return lines + [""]


def _training_section(summary: dict, stem: str, report_dir: str) -> list[str]:
    lines = ["## Training", ""]
    training = summary.get("training")
    if not training:
        return lines + ["No Trainer output in this run.", ""]
    curves = os.path.join(summary["model_run"], CURVES_FILE)
    if fileio.exists(curves):
        image = f"{stem}-{CURVES_SUFFIX}"
        fileio.copy(curves, os.path.join(report_dir, image), overwrite=True)
        lines += [f"![training curves]({image})", ""]
    else:
        lines += [f"No training curves found at `{curves}`.", ""]
    keys = (
        "epochs_run",
        "best_epoch",
        "best_val_crossentropy",
        "val_accuracy_at_best",
        "train_accuracy_at_best",
        "train_val_gap_at_best",
        "penalty_terms_in_loss",
        "penalty_at_end",
        "batchnorm_statistics_unchanged",
    )
    lines += _table(["", "value"], [[k, training.get(k)] for k in keys if k in training])
    lines += ["", f"Logs and curves: `{summary['model_run']}`", ""]
    lines += [f"- warning: {w}" for w in training.get("warnings", [])]
    return lines


def _evaluation_section(summary: dict, config: PipelineConfig) -> list[str]:
    lines = ["## Evaluation", ""]
    evaluation = summary.get("evaluation")
    if not evaluation:
        return lines + ["No Evaluator output in this run.", ""]
    checks = evaluation_checks(evaluation, config.min_accuracy, config.max_accuracy_drop)
    lines += _table(
        ["check", "value", "threshold", "passed"],
        [[c["check"], c["value"], c["threshold"], c["passed"]] for c in checks],
    )
    lines += ["", "Overall metrics:", ""]
    names = sorted({k for values in evaluation["metrics"].values() for k in values})
    lines += _table(
        ["model", *names],
        [
            [model, *(values.get(k) for k in names)]
            for model, values in sorted(evaluation["metrics"].items())
        ],
    )
    baseline = summary.get("baseline", {})
    lines += [
        "",
        f"Baseline: {baseline.get('baseline_source', 'n/a')}. TFMA validation ok: "
        f"{_fmt(evaluation.get('validation_ok'))}.",
        "",
    ]
    return lines


def _baselines_section(summary: dict) -> list[str]:
    lines = ["## Was fine-tuning worth it?", ""]
    rows = comparison(summary)
    if not rows:
        return lines + ["No baselines in this run (Trainer setting `baselines` off).", ""]
    lines += [
        "Accuracy on the same evaluation split. The baselines are scikit-learn logistic "
        "regressions fitted on the same training split: on the pixels, and on the frozen "
        "pre-trained backbone's pooled features (the linear probe, which also initialized the "
        "head when `head_init` is `probe`).",
        "",
    ]
    tuned = rows[0]["accuracy"]
    lines += _table(
        ["model", "accuracy", "fine-tuned minus this", "eval examples", "train examples"],
        [
            [
                r["model"],
                r["accuracy"],
                "-" if i == 0 else f"{tuned - r['accuracy']:+.3f}",
                r["eval_examples"],
                r["train_examples"],
            ]
            for i, r in enumerate(rows)
        ],
    )
    return lines + [""]


def _blessing_section(summary: dict) -> list[str]:
    lines = ["## Blessing and push", ""]
    if "blessed" in summary:
        lines.append(f"- blessed: {_fmt(summary['blessed'])}")
    if "pushed" in summary:
        lines.append(
            f"- pushed to: `{summary['pushed_to']}`" if summary["pushed"] else "- pushed: no"
        )
    if len(lines) == 2:
        lines.append("No Evaluator or Pusher in this run.")
    return lines + [""]


def write_run_report(config: PipelineConfig, summary: dict | None = None) -> str:
    """Write ``<root>/reports/run-<run>.md`` and its PNGs for the latest run; return its path.

    Args:
        config: the run's configuration (store, root, thresholds, safe_mode).
        summary: ``lineage.summary.collect(config)`` output if already computed.

    Raises:
        LookupError: the store has no run of ``config.pipeline_name``.
        ValueError: the regularized model cannot be loaded (see ``load_keras_model``).
    """
    if summary is None:
        summary = collect(config)
    store = connect(config.metadata_path)
    nodes = latest_run(store, config.pipeline_name)
    run_name = _run_name(store, nodes)
    stem = "run-" + (re.sub(r"[^0-9A-Za-z]+", "", run_name.split(".")[0]) or "unknown")
    report_dir = os.path.join(config.path(config.root), REPORTS_DIR)
    fileio.makedirs(report_dir)
    root = _lineage_root(nodes)
    tree = lineage(store, root, with_metrics=False) if root is not None else None
    facts = lineage_summary(tree) if tree else {}

    wall = summary.get("wall_time_s")
    lines = [
        f"# Run report: {config.pipeline_name}, run {run_name}",
        "",
        f"- metadata: `{config.metadata_path}`",
        f"- wall time: {_fmt(wall)} s" if wall is not None else "- wall time: n/a",
        "- nodes: " + ", ".join(f"{k} {v}" for k, v in summary["nodes"].items()),
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        lines += _coverage_section(facts.get("regularizer"), config, stem, report_dir, tmp)
    lines += _training_section(summary, stem, report_dir)
    lines += _evaluation_section(summary, config)
    lines += _baselines_section(summary)
    lines += _blessing_section(summary)
    lines += ["## Lineage", ""]
    if tree:
        lines += ["```text", format_lineage(tree), "```", ""]
    else:
        lines += ["Nothing to trace: this run produced no model.", ""]
    path = os.path.join(report_dir, f"{stem}.md")
    with fileio.open(path, "w") as handle:
        handle.write("\n".join(lines))
    return path

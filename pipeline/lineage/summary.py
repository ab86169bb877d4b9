"""The short summary `make run` prints: data and labels, artifacts, validation, metrics (overall,
per class, per span), the comparison with production, blessing, push."""

from __future__ import annotations

import json
import os

from tfx.dsl.io import fileio

from backbone_regularizer.components.image_ingestion.images import LABEL_KEY, SPAN_KEY
from backbone_regularizer.components.regularizer import component_spec as reg
from backbone_regularizer.pipeline.config import PipelineConfig
from backbone_regularizer.pipeline.lineage import per_class
from backbone_regularizer.pipeline.lineage.queries import (
    connect,
    custom_properties,
    latest_run,
    plain_properties,
)
from backbone_regularizer.pipeline.trainer.module import SUMMARY_FILE


def _slice_name(keys) -> str:
    return ", ".join(
        f"{k.column}:{getattr(k, k.WhichOneof('kind'))}" if k.WhichOneof("kind") else k.column
        for k in keys
    )


def read_evaluation(uri: str) -> dict:
    """The Evaluator's metrics per model: overall (``metrics``), per label and per span slice
    (``by_label``/``by_span``, keyed by the value as a string), and its validation: ``ok``,
    the failed thresholds (``failures``) and the required slices without examples
    (``missing_slices``)."""
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format

    metrics: dict = {}
    sliced: dict[str, dict] = {LABEL_KEY: {}, SPAN_KEY: {}}
    for slice_metrics in tfma.load_metrics(uri):
        keys = list(slice_metrics.slice_key.single_slice_keys)
        if not keys:
            target = metrics
        elif len(keys) == 1 and keys[0].column in sliced:
            target = sliced[keys[0].column].setdefault(str(keys[0].int64_value), {})
        else:
            continue
        for item in slice_metrics.metric_keys_and_values:
            if item.key.is_diff:
                continue
            target.setdefault(item.key.model_name or "candidate", {})[item.key.name] = (
                item.value.double_value.value
            )
    validation = tfma.load_validation_result(uri)
    failures = [
        {
            "slice": _slice_name(per_slice.slice_key.single_slice_keys) or "overall",
            "metric": failure.metric_key.name,
            "change": failure.metric_key.is_diff,
            "value": failure.metric_value.double_value.value,
        }
        for per_slice in validation.metric_validations_per_slice
        for failure in per_slice.failures
    ]
    return {
        "metrics": metrics,
        "by_label": sliced[LABEL_KEY],
        "by_span": sliced[SPAN_KEY],
        "validation_ok": validation.validation_ok,
        "failures": failures,
        "missing_slices": [json_format.MessageToDict(s) for s in validation.missing_slices],
    }


def collect(config: PipelineConfig, seconds: float | None = None) -> dict:
    """Gather the latest run's facts from ML Metadata and the artifacts it points to."""
    nodes = latest_run(connect(config.metadata_path), config.pipeline_name)
    summary: dict = {
        "pipeline": config.pipeline_name,
        "wall_time_s": seconds,
        "metadata": config.metadata_path,
        "nodes": {n.node_id: n.state for n in nodes.values()},
        "max_class_accuracy_drop": config.max_class_accuracy_drop,
    }
    if "ImageExampleGen" in nodes and nodes["ImageExampleGen"].outputs.get("examples"):
        examples = nodes["ImageExampleGen"].outputs["examples"][0]
        summary["examples"] = {"uri": examples.uri, **plain_properties(examples)}
    if "BackboneRegularizer" in nodes:
        model = nodes["BackboneRegularizer"].outputs[reg.MODEL_KEY][0]
        summary["regularized_model"] = {"uri": model.uri, **custom_properties(model)}
    if "Trainer" in nodes:
        trainer = nodes["Trainer"].outputs
        summary["trained_model"] = trainer["model"][0].uri
        run_dir = trainer["model_run"][0].uri
        summary["model_run"] = run_dir
        path = os.path.join(run_dir, SUMMARY_FILE)
        if fileio.exists(path):
            with fileio.open(path) as handle:
                training = json.loads(handle.read())
            training.pop("history", None)
            summary["training"] = training
    if "Evaluator" in nodes:
        evaluation = nodes["Evaluator"].outputs
        summary["evaluation"] = read_evaluation(evaluation["evaluation"][0].uri)
        summary["blessed"] = bool(custom_properties(evaluation["blessing"][0]).get("blessed", 0))
    if "latest_pushed_model" in nodes:
        summary["baseline"] = custom_properties(nodes["latest_pushed_model"].outputs["baseline"][0])
    if "Pusher" in nodes:
        pushed = custom_properties(nodes["Pusher"].outputs["pushed_model"][0])
        summary["pushed"] = bool(pushed.get("pushed", 0))
        summary["pushed_to"] = pushed.get("pushed_destination")
    return summary


def describe_attempts(attempts: list[dict] | None) -> str | None:
    """``"2 attempts: 1 interrupted after epoch 1 (pod p-1); 2 resumed from epoch 1,
    completed"``; None for a Trainer that ran once (or wrote no attempts)."""
    if not attempts or len(attempts) < 2:
        return None
    parts = []
    for attempt in attempts:
        text = f"{attempt['attempt']}"
        if attempt.get("resumed_from_epoch") is not None:
            text += f" resumed from epoch {attempt['resumed_from_epoch']},"
        if attempt["outcome"] == "interrupted":
            done = attempt.get("epochs_completed_before_interruption", 0)
            text += f" interrupted after epoch {done}" if done else " interrupted before epoch 1"
        else:
            text += f" {attempt['outcome']}"
        if attempt.get("pod"):
            text += f" (pod {attempt['pod']})"
        parts.append(text)
    return f"{len(attempts)} attempts: " + "; ".join(parts)


BASELINE_NAMES = {
    "pixels_logistic_regression": "pixel logistic regression",
    "linear_probe": "linear probe (frozen backbone)",
}


def comparison(summary: dict) -> list[dict]:
    """The fine-tuned model beside the baselines, all on the run's evaluation split.

    The fine-tuned accuracy is the Evaluator's (TFMA on the eval split) when the run has one,
    else the Trainer's validation accuracy at the restored epoch (same split).

    Returns:
        Rows ``{"model", "accuracy", "eval_examples", "train_examples"}``, fine-tuned first
        (the whole splits); a baseline's row also has ``"eval_split_examples"`` and
        ``"train_split_examples"``: its counts are those of its bounded sample. Empty when
        the Trainer wrote no baselines.
    """
    training = summary.get("training") or {}
    baselines = training.get("baselines")
    if not baselines:
        return []
    metrics = (summary.get("evaluation") or {}).get("metrics", {}).get("candidate", {})
    evaluated = metrics.get("sparse_categorical_accuracy")
    first = next(iter(baselines.values()))
    rows = [
        {
            "model": "fine-tuned" + (" (Evaluator)" if evaluated is not None else " (Trainer)"),
            "accuracy": evaluated if evaluated is not None else training["val_accuracy_at_best"],
            "eval_examples": first.get("eval_split_examples", first["eval_examples"]),
            "train_examples": first.get("train_split_examples", first["train_examples"]),
        }
    ]
    for key, values in baselines.items():
        rows.append(
            {
                "model": BASELINE_NAMES.get(key, key),
                "accuracy": values["eval_accuracy"],
                "eval_examples": values["eval_examples"],
                "train_examples": values["train_examples"],
                "eval_split_examples": values.get("eval_split_examples", values["eval_examples"]),
                "train_split_examples": values.get(
                    "train_split_examples", values["train_examples"]
                ),
            }
        )
    return rows


def examples(row: dict, split: str) -> int | str:
    """A ``comparison`` row's ``split`` ("eval"/"train") count: ``n``, or ``"n of N"`` for a
    baseline fitted or scored on a sample of ``n`` of the split's ``N`` examples."""
    count = row[f"{split}_examples"]
    total = row.get(f"{split}_split_examples", count)
    return count if total == count else f"{count} of {total}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def format_summary(summary: dict) -> str:
    lines = [f"pipeline {summary['pipeline']}"]
    if summary.get("wall_time_s") is not None:
        lines[0] += f" finished in {summary['wall_time_s']:.0f} s"
    states = summary["nodes"]
    lines.append("  nodes: " + ", ".join(f"{k}={v}" for k, v in states.items()))
    reg_model = summary.get("regularized_model")
    if reg_model:
        lines += [
            f"  regularized backbone: {reg_model['uri']}",
            f"    {reg_model.get(reg.PROP_REGULARIZER)} on {reg_model.get(reg.PROP_REGULARIZED)} "
            f"weights ({reg_model.get(reg.PROP_REGULARIZED_FROZEN)} frozen), "
            f"{reg_model.get(reg.PROP_SKIPPED)} skipped; validation passed: "
            f"{bool(reg_model.get(reg.PROP_VALIDATION_PASSED))}; penalty at init "
            f"{reg_model.get(reg.PROP_PENALTY, float('nan')):.4g}",
            f"    weights sha256 {reg_model.get(reg.PROP_WEIGHTS_SHA256)}",
        ]
    lines += per_class.data_lines(summary)
    training = summary.get("training")
    if training:
        lines.append(
            f"  training: {training['epochs_run']} epochs "
            f"(best: {training.get('best', training['best_epoch'])}), "
            f"val accuracy {training['val_accuracy_at_best']:.3f}, train/val gap "
            f"{_signed(training['train_val_gap_at_best'])}, "
            f"{training['penalty_terms_in_loss']} penalty terms, "
            f"BN statistics unchanged ({training['batchnorm_statistics_unchanged']})"
        )
        attempts = describe_attempts(training.get("attempts"))
        if attempts:
            lines.append(f"    {attempts}")
        lines.append(f"    logs and curves: {summary['model_run']}")
    rows = comparison(summary)
    if rows:
        sizes = f"{rows[0]['eval_examples']} examples, trained on {rows[0]['train_examples']}"
        if examples(rows[1], "eval") != rows[1]["eval_examples"] or (
            examples(rows[1], "train") != rows[1]["train_examples"]
        ):
            sizes += f"; baselines on {examples(rows[1], 'eval')} and {examples(rows[1], 'train')}"
        lines.append(
            f"  on the same eval split ({sizes}): "
            + ", ".join(f"{r['model']} {r['accuracy']:.3f}" for r in rows)
        )
    evaluation = summary.get("evaluation")
    if evaluation:
        for model_name, metrics in sorted(evaluation["metrics"].items()):
            accuracy = metrics.get("sparse_categorical_accuracy")
            count = metrics.get("example_count")
            lines.append(
                f"  evaluation ({model_name}): accuracy {accuracy:.3f} on {count:.0f} examples"
            )
        baseline = summary.get("baseline", {})
        lines.append(f"    baseline: {baseline.get('baseline_source')}")
        lines += per_class.guard_lines(summary)
        lines.append(f"  blessed: {summary['blessed']}")
    if "pushed" in summary:
        lines.append(
            f"  pushed: {summary['pushed_to']}"
            if summary["pushed"]
            else "  pushed: no (not blessed)"
        )
    return "\n".join(lines)

"""The facts a reader of a lineage asks for, picked from the tree by TFX channel keys.

``backbone_regularizer.pipeline.lineage.graph`` walks ML Metadata generically; this module is the
only place that
names this pipeline's channels (Pusher ``model_blessing``, Trainer ``base_model`` ...).

    result = pushed_model_lineage(connect("runs/demo/metadata.sqlite"))  # {"summary", "tree"}
"""

from __future__ import annotations

import json

from backbone_regularizer.pipeline.lineage.graph import (
    DESTINATION_PROPERTY,
    EVALUATOR_EVALUATION_KEY,
    PUSHED_MODEL_TYPES,
    PUSHER_BLESSING_KEY,
    PUSHER_MODEL_KEY,
    TRAINER_BASE_MODEL_KEY,
    TRAINER_EXAMPLES_KEY,
    TRAINER_MODEL_RUN_KEY,
    _is_pushed,
    find_pushed_model,
    iter_artifacts,
    lineage,
)

# BackboneRegularizer's input channel
# (backbone_regularizer.components.regularizer.component_spec.BACKBONE_KEY,
# equal by test): that package imports Keras, which reading ML Metadata does not need.
REGULARIZER_INPUT_KEY = "backbone"


def pushed_model_lineage(
    store,
    pushed_model: str | None = None,
    pipeline_name: str | None = None,
    with_metrics: bool = True,
) -> dict:
    """Lineage tree of a pushed model plus its ``summary`` (see ``lineage_summary``).

    Raises:
        LookupError: no such pushed model (see ``find_pushed_model``).
    """
    tree = lineage(store, find_pushed_model(store, pushed_model, pipeline_name), with_metrics)
    return {"summary": lineage_summary(tree), "tree": tree}


def _producer_of(nodes: dict[int, dict], artifact: dict | None) -> dict | None:
    if artifact is None:
        return None
    return (nodes.get(artifact["artifact_id"]) or {}).get("producer")


def _first(channel: dict | None, key: str) -> dict | None:
    items = (channel or {}).get(key) or []
    return items[0] if items else None


def _json_or_text(value):
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


def lineage_summary(tree: dict) -> dict:
    """The facts a reader of a lineage asks for, picked from the tree by TFX channel keys.

    Keys (absent when the graph has no such step): ``pushed_model``, ``blessing``,
    ``evaluation``, ``trainer``, ``regularizer``, ``backbone``, ``examples``.
    """
    nodes: dict[int, dict] = {}
    for node in iter_artifacts(tree):
        nodes.setdefault(node["artifact_id"], node)

    def expanded(item):
        return nodes.get(item["artifact_id"]) if item else None

    summary: dict = {}
    root = tree
    props = root["properties"]
    summary["pushed_model"] = {
        "artifact_id": root["artifact_id"],
        "type": root["type"],
        "uri": root["uri"],
        "pushed": _is_pushed(props),
        "pushed_destination": props.get(DESTINATION_PROPERTY),
        "pushed_version": props.get("pushed_version"),
    }
    pusher = root.get("producer") or {}
    blessing = expanded(_first(pusher.get("inputs"), PUSHER_BLESSING_KEY))
    if blessing:
        evaluator = blessing.get("producer") or {}
        summary["blessing"] = {
            "artifact_id": blessing["artifact_id"],
            "blessed": bool(blessing["properties"].get("blessed", 0)),
            "evaluator_execution": evaluator.get("execution_id"),
        }
        evaluation = _first(evaluator.get("outputs"), EVALUATOR_EVALUATION_KEY)
        if evaluation:
            summary["evaluation"] = {
                k: evaluation[k]
                for k in ("artifact_id", "uri", "metrics", "metrics_error")
                if k in evaluation
            }
    model = expanded(_first(pusher.get("inputs"), PUSHER_MODEL_KEY))
    if root["type"] not in PUSHED_MODEL_TYPES:
        model = root  # a run that pushed nothing: start from what the caller gave
    trainer = _producer_of(nodes, model)
    if trainer and {TRAINER_EXAMPLES_KEY, TRAINER_BASE_MODEL_KEY} & set(trainer["inputs"]):
        model_run = _first(trainer.get("outputs"), TRAINER_MODEL_RUN_KEY)
        summary["trainer"] = {
            k: trainer[k] for k in ("execution_id", "node", "state", "run", "pipeline")
        } | {"model": model["uri"], "model_run": model_run["uri"] if model_run else None}
        examples = expanded(_first(trainer.get("inputs"), TRAINER_EXAMPLES_KEY))
        if examples:
            props = examples["properties"]
            producer = examples.get("producer") or {}
            summary["examples"] = {
                "artifact_id": examples["artifact_id"],
                "uri": examples["uri"],
                "node": producer.get("node"),
                "run": producer.get("run"),
                "span": props.get("span"),
                "split_counts": {
                    k[len("count_") :]: v for k, v in props.items() if k.startswith("count_")
                },
                "label_map": _json_or_text(props.get("label_map")),
                "spans": _json_or_text(props.get("spans")),
                "label_source": props.get("label_source"),
            }
        regularized = expanded(_first(trainer.get("inputs"), TRAINER_BASE_MODEL_KEY))
        if regularized:
            producer = regularized.get("producer") or {}
            summary["regularizer"] = {
                "artifact_id": regularized["artifact_id"],
                "uri": regularized["uri"],
                "node": producer.get("node"),
                "execution_id": producer.get("execution_id"),
                "run": producer.get("run"),
                "properties": regularized["properties"],
            }
            backbone = expanded(_first(producer.get("inputs"), REGULARIZER_INPUT_KEY))
            if backbone:
                loader = backbone.get("producer") or {}
                props = backbone["properties"]
                summary["backbone"] = {
                    "artifact_id": backbone["artifact_id"],
                    "uri": backbone["uri"],
                    "node": loader.get("node"),
                    "imported": "Importer" in str(loader.get("type", "")),
                } | {
                    k: props[k]
                    for k in ("source", "weights_sha256", "parameter_count", "architecture")
                    if k in props
                }
    return summary

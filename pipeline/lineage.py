"""Where a pushed model came from, read from ML Metadata events.

From an artifact, the execution that output it is found through MLMD OUTPUT events, then that
execution's INPUT events give its input artifacts, recursively. Nothing here knows the shape of
this pipeline: the walk is generic, and only ``lineage_summary`` names the TFX channel keys
(Pusher ``model_blessing``, Trainer ``base_model`` ...) to pick out the facts a reader asks
for: blessing and metrics, Trainer run, the regularizer's validation, the backbone's
provenance and the examples' span.

    store = connect("runs/demo/metadata.sqlite")
    result = pushed_model_lineage(store)  # the newest pushed model: {"summary", "tree"}
    print(format_lineage(result))
    result = pushed_model_lineage(store, pushed_model="runs/demo/serving/1795765710")

Works the same on a sqlite store (LocalDagRunner) and an ML Metadata gRPC service
(``connect_grpc``); the artifacts' files are read only to show evaluation metrics.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from ml_metadata import errors
from ml_metadata.proto import metadata_store_pb2

from components.regularizer import component_spec as reg
from pipeline.metadata_queries import plain_properties

PUSHED_MODEL_TYPES = ("PushedModel", "tfx.PushedModel")
EVALUATION_TYPES = ("ModelEvaluation", "tfx.ModelEvaluation")
# TFX channel keys, used only to name the facts in `lineage_summary`.
PUSHER_MODEL_KEY = "model"
PUSHER_BLESSING_KEY = "model_blessing"
EVALUATOR_EVALUATION_KEY = "evaluation"
TRAINER_EXAMPLES_KEY = "examples"
TRAINER_BASE_MODEL_KEY = "base_model"
TRAINER_MODEL_RUN_KEY = "model_run"
PUSHED_PROPERTY = "pushed"
DESTINATION_PROPERTY = "pushed_destination"

# Context types: TFX's own launcher (LocalDagRunner, KFP v1) and the KFP v2 backend.
_PIPELINE = ("pipeline", "system.Pipeline")
_PIPELINE_RUN = ("pipeline_run", "system.PipelineRun")
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
_RAN = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.RUNNING)
_EXECUTION_STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
_ARTIFACT_STATE_NAMES = {v: k for k, v in metadata_store_pb2.Artifact.State.items()}
# Left out of the text tree (still in the JSON): bookkeeping, not provenance.
_QUIET = frozenset(
    {
        "tfx_version",
        "is_external",
        "input_fingerprint",
        "payload_format",
        "file_format",
        "current_model",
        "baseline_model",
        "current_model_id",
        "baseline_model_id",
        "stats_dashboard_link",
        "sample_rate_by_split",
        "display_name",
    }
)


def _same_location(a: str, b: str) -> bool:
    def norm(uri: str) -> str:
        uri = uri.rstrip("/")
        return uri if "://" in uri else os.path.realpath(uri)

    return bool(a) and bool(b) and norm(a) == norm(b)


def _is_pushed(properties: dict) -> bool:
    value = properties.get(PUSHED_PROPERTY, 0)
    try:
        return int(float(value)) == 1  # KFP v2 may store numbers as doubles
    except (TypeError, ValueError):
        return False


def _pushed_model_artifacts(store, pipeline_name: str | None) -> list:
    artifacts = []
    for name in PUSHED_MODEL_TYPES:
        try:
            artifacts += store.get_artifacts_by_type(name)
        except errors.NotFoundError:  # a store where the type was never registered
            continue
    if pipeline_name is not None:
        pipeline = next(
            filter(None, (store.get_context_by_type_and_name(t, pipeline_name) for t in _PIPELINE)),
            None,
        )
        if pipeline is None:
            known = [c.name for t in _PIPELINE for c in store.get_contexts_by_type(t)]
            raise LookupError(
                f"Expected pipeline {pipeline_name!r} in ML Metadata. Received: no such "
                f"pipeline; pipelines in the store: {known}"
            )
        ids = {a.id for a in store.get_artifacts_by_context(pipeline.id)}
        artifacts = [a for a in artifacts if a.id in ids]
    return sorted(artifacts, key=lambda a: (a.create_time_since_epoch, a.id))


def find_pushed_model(store, pushed_model: str | None = None, pipeline_name: str | None = None):
    """The PushedModel artifact to trace: by location, or the newest one actually pushed.

    Args:
        store: an ML Metadata store (``connect`` or ``connect_grpc``).
        pushed_model: the ``pushed_destination`` custom property (the serving folder, e.g.
            ``runs/demo/serving/1795765710``) or the artifact's own URI; None for the newest
            PushedModel artifact with ``pushed == 1``.
        pipeline_name: only consider artifacts of this pipeline (a shared KFP store).

    Raises:
        LookupError: no PushedModel matches; the message lists what the store holds.
    """
    artifacts = _pushed_model_artifacts(store, pipeline_name)
    where = f" of pipeline {pipeline_name!r}" if pipeline_name else ""
    if pushed_model is None:
        pushed = [a for a in artifacts if _is_pushed(plain_properties(a))]
        if not pushed:
            raise LookupError(
                f"Expected a PushedModel artifact{where} with pushed=1 in ML Metadata. "
                f"Received: {len(artifacts)} PushedModel artifact(s), none pushed. Run the "
                "pipeline until Evaluator blesses a model, or point --metadata at another store."
            )
        return pushed[-1]
    matches = [
        a
        for a in artifacts
        if _same_location(pushed_model, str(plain_properties(a).get(DESTINATION_PROPERTY, "")))
        or _same_location(pushed_model, a.uri)
    ]
    if not matches:
        known = [
            plain_properties(a).get(DESTINATION_PROPERTY) or a.uri
            for a in artifacts
            if _is_pushed(plain_properties(a))
        ]
        raise LookupError(
            f"Expected a PushedModel artifact{where} whose pushed_destination or URI is "
            f"{pushed_model!r}. Received: no match among {len(artifacts)} PushedModel "
            f"artifact(s); pushed destinations known: {known[-5:]}"
        )
    return matches[-1]


class _Graph:
    """Cached reads of one store: artifacts, executions, events, contexts."""

    def __init__(self, store):
        self.store = store
        self._types: dict[int, str] = {}
        self._execution_types: dict[int, str] = {}

    def artifact_type(self, artifact) -> str:
        if artifact.type_id not in self._types:
            self._types.update({t.id: t.name for t in self.store.get_artifact_types()})
        return self._types.get(artifact.type_id, str(artifact.type_id))

    def execution_type(self, execution) -> str:
        if execution.type_id not in self._execution_types:
            self._execution_types.update({t.id: t.name for t in self.store.get_execution_types()})
        return self._execution_types.get(execution.type_id, str(execution.type_id))

    def producer(self, artifact_id: int):
        """The execution that wrote the artifact.

        A cached execution records OUTPUT events for the artifacts it reused, so one artifact
        can have several "producers"; the one that ran (COMPLETE) made it.
        """
        events = [
            e
            for e in self.store.get_events_by_artifact_ids([artifact_id])
            if e.type in _OUTPUT_EVENTS
        ]
        if not events:
            return None
        executions = self.store.get_executions_by_id(sorted({e.execution_id for e in events}))
        ran = [e for e in executions if e.last_known_state in _RAN]
        return min(ran or executions, key=lambda e: (e.create_time_since_epoch, e.id))

    def events_by_key(self, execution_id: int, kinds) -> dict[str, list]:
        events = [
            e for e in self.store.get_events_by_execution_ids([execution_id]) if e.type in kinds
        ]
        artifacts = {
            a.id: a for a in self.store.get_artifacts_by_id([e.artifact_id for e in events])
        }
        grouped: dict[str, list] = {}
        for event in sorted(events, key=_event_order):
            key = next((s.key for s in event.path.steps if s.HasField("key")), "")
            grouped.setdefault(key, []).append(artifacts[event.artifact_id])
        return dict(sorted(grouped.items()))

    def execution_info(self, execution) -> dict:
        contexts = self.store.get_contexts_by_execution(execution.id)
        by_type = {}
        for context in contexts:
            by_type.setdefault(context.type, context.name)
        pipeline = next(filter(None, map(by_type.get, _PIPELINE)), None)
        node = by_type.get("node")
        if node and pipeline and node.startswith(f"{pipeline}."):
            node = node[len(pipeline) + 1 :]
        properties = plain_properties(execution)
        execution_type = self.execution_type(execution)
        # KFP v2 names tasks in execution properties rather than TFX "node" contexts.
        node = (
            node
            or properties.get("display_name")
            or properties.get("task_name")
            or execution_type.rsplit(".", 1)[-1]
        )
        return {
            "execution_id": execution.id,
            "node": node,
            "type": execution_type,
            "state": _EXECUTION_STATE_NAMES.get(
                execution.last_known_state, str(execution.last_known_state)
            ),
            "pipeline": pipeline,
            "run": next(filter(None, map(by_type.get, _PIPELINE_RUN)), None),
        }


def _event_order(event) -> tuple:
    index = next((s.index for s in event.path.steps if s.HasField("index")), 0)
    return (index, event.artifact_id)


def _artifact_info(graph: _Graph, artifact) -> dict:
    return {
        "artifact_id": artifact.id,
        "type": graph.artifact_type(artifact),
        "uri": artifact.uri,
        "state": _ARTIFACT_STATE_NAMES.get(artifact.state, str(artifact.state)),
        "properties": dict(sorted(plain_properties(artifact).items())),
    }


def evaluation_metrics(uri: str) -> dict:
    """Overall-slice metrics per model and TFMA's validation result of a ModelEvaluation."""
    from pipeline.run_summary import read_evaluation  # one reader of TFMA output, shared

    return read_evaluation(uri)


def _leaf(graph: _Graph, artifact, with_metrics: bool) -> dict:
    node = _artifact_info(graph, artifact)
    if with_metrics and node["type"] in EVALUATION_TYPES:
        try:
            node["metrics"] = evaluation_metrics(artifact.uri)
        except Exception as err:  # a missing or foreign-format evaluation: say so, go on
            node["metrics_error"] = f"{type(err).__name__}: {err}"
    return node


def lineage(store, artifact, with_metrics: bool = True, max_depth: int = 50) -> dict:
    """The upstream lineage tree of ``artifact`` as plain dicts (JSON-able).

    Each artifact node: ``artifact_id``, ``type``, ``uri``, ``state``, ``properties`` and
    ``producer``: ``{execution_id, node, type, state, pipeline, run, inputs: {key: [artifact
    nodes]}, outputs: {key: [sibling artifacts, not expanded]}}`` (None for an artifact no
    execution output). An artifact met a second time is ``{..., "seen_above": True}``.

    Args:
        store: an ML Metadata store.
        artifact: an MLMD ``Artifact`` proto (e.g. from ``find_pushed_model``).
        with_metrics: read overall metrics into ModelEvaluation nodes (imports TFMA).
        max_depth: executions to follow up the graph at most (guards a malformed store).
    """
    graph = _Graph(store)
    seen: set[int] = set()

    def visit(item, depth: int) -> dict:
        if item.id in seen:
            return {
                "artifact_id": item.id,
                "type": graph.artifact_type(item),
                "uri": item.uri,
                "seen_above": True,
            }
        seen.add(item.id)
        node = _leaf(graph, item, with_metrics)
        execution = graph.producer(item.id)
        if execution is None or depth >= max_depth:
            node["producer"] = None
            return node
        producer = graph.execution_info(execution)
        outputs = graph.events_by_key(execution.id, _OUTPUT_EVENTS)
        producer["outputs"] = {
            key: [_leaf(graph, a, with_metrics) for a in items if a.id != item.id]
            for key, items in outputs.items()
        }
        producer["outputs"] = {k: v for k, v in producer["outputs"].items() if v}
        for items in outputs.values():
            seen.update(a.id for a in items)
        producer["inputs"] = {
            key: [visit(a, depth + 1) for a in items]
            for key, items in graph.events_by_key(execution.id, _INPUT_EVENTS).items()
        }
        node["producer"] = producer
        return node

    return visit(artifact, 0)


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


def iter_artifacts(tree: dict) -> Iterator[dict]:
    """Every expanded artifact node of a tree, depth first (inputs and sibling outputs)."""
    if tree.get("seen_above"):
        return
    yield tree
    producer = tree.get("producer") or {}
    for items in producer.get("outputs", {}).values():
        yield from items
    for items in producer.get("inputs", {}).values():
        for item in items:
            yield from iter_artifacts(item)


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
            backbone = expanded(_first(producer.get("inputs"), reg.BACKBONE_KEY))
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


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 90 else text[:87] + "..."


def _artifact_line(node: dict) -> str:
    if node.get("seen_above"):
        return f"{node['type']} #{node['artifact_id']} (see above)"
    return f"{node['type']} #{node['artifact_id']} {node['uri']}"


def _detail_lines(node: dict) -> list[str]:
    if node.get("seen_above"):
        return []
    props = {k: v for k, v in node.get("properties", {}).items() if k not in _QUIET}
    lines = [f"{k}={_short(v)}" for k, v in sorted(props.items())]
    metrics = node.get("metrics")
    if metrics:
        for model_name, values in sorted(metrics["metrics"].items()):
            shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()))
            lines.append(f"{model_name}: {shown}")
        lines.append(f"validation_ok={metrics['validation_ok']}")
    if node.get("metrics_error"):
        lines.append(f"metrics unreadable: {node['metrics_error']}")
    return lines


def format_lineage(tree: dict) -> str:
    """A readable text tree of ``lineage()``/``pushed_model_lineage()`` output.

    Each artifact line is followed by its properties, then the execution that produced it,
    whose inputs are indented below it (``key: Type #id uri``).
    """
    tree = tree.get("tree", tree)
    lines: list[str] = []

    def artifact(node: dict, label: str, prefix: str, last: bool, top: bool = False) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        lines.append(f"{prefix}{branch}{label}{_artifact_line(node)}")
        inner = prefix if top else prefix + ("    " if last else "│   ")
        producer = node.get("producer")
        for detail in _detail_lines(node):
            lines.append(f"{inner}{'│ ' if producer else '  '}  {detail}")
        if producer:
            execution(producer, inner)

    def execution(producer: dict, prefix: str) -> None:
        lines.append(
            f"{prefix}└── produced by {producer['node']} (execution {producer['execution_id']}, "
            f"{producer['state']}, run {producer['run']})"
        )
        inner = prefix + "    "
        children = [
            ("output ", key, item) for key, items in producer["outputs"].items() for item in items
        ] + [("", key, item) for key, items in producer["inputs"].items() for item in items]
        for index, (kind, key, item) in enumerate(children):
            artifact(item, f"{kind}{key}: ", inner, index == len(children) - 1)

    artifact(tree, "", "", True, top=True)
    return "\n".join(lines)

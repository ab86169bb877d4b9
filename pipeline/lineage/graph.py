"""Where a pushed model came from, read from ML Metadata events.

From an artifact, the execution that output it is found through MLMD OUTPUT events, then that
execution's INPUT events give its input artifacts, recursively. Nothing here knows the shape of
this pipeline: the walk is generic, and only ``facts.lineage_summary`` names the TFX channel keys
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

import os
from collections.abc import Iterator

from ml_metadata import errors
from ml_metadata.proto import metadata_store_pb2

from backbone_regularizer.pipeline.lineage.queries import plain_properties

PUSHED_MODEL_TYPES = ("PushedModel", "tfx.PushedModel")
EVALUATION_TYPES = ("ModelEvaluation", "tfx.ModelEvaluation")
# TFX channel keys, used only to name the facts in `facts.lineage_summary`.
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
    """Overall-slice metrics per model and TFMA's validation result of a ModelEvaluation.

    An ``s3://`` evaluation registers ``s3://`` first (the ``s3`` extra; without it the
    node's ``metrics_error`` names the extra).
    """
    from backbone_regularizer.pipeline import object_store
    from backbone_regularizer.pipeline.lineage.summary import (
        read_evaluation,  # one reader of TFMA output, shared
    )

    if object_store.is_s3(uri):
        object_store.configure_process()

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

"""Read what a pipeline run did from ML Metadata: executions per node and their artifacts."""

from __future__ import annotations

import dataclasses

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

_STATES = {
    metadata_store_pb2.Execution.COMPLETE: "COMPLETE",
    metadata_store_pb2.Execution.CACHED: "CACHED",
    metadata_store_pb2.Execution.FAILED: "FAILED",
    metadata_store_pb2.Execution.RUNNING: "RUNNING",
    metadata_store_pb2.Execution.CANCELED: "CANCELED",
    metadata_store_pb2.Execution.NEW: "NEW",
}
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)


def connect(sqlite_path: str, read_only: bool = True) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = sqlite_path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
        if read_only
        else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    return metadata_store.MetadataStore(config)


def custom_properties(item) -> dict:
    """MLMD custom properties as plain Python values."""
    out = {}
    for key, value in item.custom_properties.items():
        kind = value.WhichOneof("value")
        out[key] = (
            getattr(value, kind)
            if kind in ("int_value", "double_value", "string_value")
            else str(value)
        )
    return out


@dataclasses.dataclass
class NodeRun:
    node_id: str
    execution_id: int
    state: str
    inputs: dict[str, list]  # key -> MLMD artifacts
    outputs: dict[str, list]


def _events_by_key(store, execution_id: int, kinds) -> dict[str, list]:
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type in kinds]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    grouped: dict[str, list] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        grouped.setdefault(key, []).append(artifacts[event.artifact_id])
    return grouped


def latest_run(store, pipeline_name: str) -> dict[str, NodeRun]:
    """Node id -> what its execution in the newest run of ``pipeline_name`` did.

    Raises:
        LookupError: the store has no run of this pipeline.
    """
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        raise LookupError(
            f"Expected a run of pipeline {pipeline_name!r} in ML Metadata. Received: none"
        )
    pipeline_executions = {e.id for e in store.get_executions_by_context(pipeline.id)}
    runs = [
        ctx
        for ctx in store.get_contexts_by_type("pipeline_run")
        if any(e.id in pipeline_executions for e in store.get_executions_by_context(ctx.id))
    ]
    if not runs:
        raise LookupError(f"Expected a run of pipeline {pipeline_name!r}. Received: none")
    run = max(runs, key=lambda ctx: (ctx.create_time_since_epoch, ctx.id))
    nodes: dict[str, NodeRun] = {}
    prefix = f"{pipeline_name}."
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        node_names = [
            c.name[len(prefix) :]
            for c in store.get_contexts_by_execution(execution.id)
            if c.type == "node" and c.name.startswith(prefix)
        ]
        if not node_names:
            continue
        nodes[node_names[0]] = NodeRun(
            node_id=node_names[0],
            execution_id=execution.id,
            state=_STATES.get(execution.last_known_state, str(execution.last_known_state)),
            inputs=_events_by_key(store, execution.id, _INPUT_EVENTS),
            outputs=_events_by_key(store, execution.id, _OUTPUT_EVENTS),
        )
    return nodes


def connect_grpc(host: str, port: int) -> metadata_store.MetadataStore:
    """Connect to an ML Metadata gRPC service (KFP's ``metadata-grpc-service``).

    >>> store = connect_grpc("localhost", 8080)  # after `kubectl port-forward` # doctest: +SKIP
    """
    config = metadata_store_pb2.MetadataStoreClientConfig(host=host, port=port)
    return metadata_store.MetadataStore(config)


def plain_properties(item) -> dict:
    """Properties and custom properties of an artifact or execution as JSON-able values.

    Unlike ``custom_properties`` it also reads typed ``properties`` (e.g. ``span``,
    ``split_names``) and decodes struct values; TFX wraps JSON in ``{"__value__": "..."}``.
    Custom properties win when a name is in both.
    """
    import json

    from google.protobuf import json_format

    out = {}
    for values in (item.properties, item.custom_properties):
        for key, value in values.items():
            kind = value.WhichOneof("value")
            if kind in ("int_value", "double_value", "string_value", "bool_value"):
                out[key] = getattr(value, kind)
            elif kind == "struct_value":
                decoded = json_format.MessageToDict(value.struct_value)
                if set(decoded) == {"__value__"} and isinstance(decoded["__value__"], str):
                    try:
                        decoded = json.loads(decoded["__value__"])
                    except json.JSONDecodeError:
                        decoded = decoded["__value__"]
                out[key] = decoded
            elif kind is not None:
                out[key] = str(getattr(value, kind))
    return out

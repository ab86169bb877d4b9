"""Run the pipeline on LocalDagRunner (sqlite ML Metadata, Beam DirectRunner)."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import time
from collections.abc import Callable

from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler import constants
from tfx.orchestration import metadata
from tfx.orchestration.local import runner_utils
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.portable import launcher, runtime_parameter_utils

from backbone_regularizer.pipeline.config import PipelineConfig
from backbone_regularizer.pipeline.create_pipeline import create_pipeline, local_metadata
from backbone_regularizer.pipeline.object_store import check_uris, configure_process, s3_uris

STARTED = "started"
COMPLETED = "completed"
CACHED = "cached"
FAILED = "failed"
SKIPPED = "skipped"
_STATUS = {
    metadata_store_pb2.Execution.COMPLETE: COMPLETED,
    metadata_store_pb2.Execution.CACHED: CACHED,
}


@dataclasses.dataclass(frozen=True)
class StepEvent:
    """One pipeline step starting or ending, as ``run_local(..., on_step=)`` reports it.

    ``status`` is ``"started"``, then one of ``"completed"`` (the executor ran),
    ``"cached"`` (ML Metadata held the result of the same inputs and settings),
    ``"skipped"`` or ``"failed"`` (``error`` is set; the exception goes on to the caller).
    """

    node: str
    index: int
    total: int
    status: str
    seconds: float = 0.0
    error: BaseException | None = None


class ObservedLocalDagRunner(LocalDagRunner):
    """LocalDagRunner that reports each node as it starts and ends.

    ``run_with_ir`` is TFX 1.16's loop (``tfx/orchestration/local/local_dag_runner.py``):
    nodes in topological order, each through ``launcher.Launcher`` in this process. Only
    what it reports is new: the node's status is read back from ML Metadata after
    ``launch()`` (``CACHED`` or ``COMPLETE``). Partial runs (``run_options``) are not
    supported: this project never uses them.
    """

    def __init__(self, on_step: Callable[[StepEvent], None]):
        super().__init__()
        self._on_step = on_step

    def run_with_ir(self, pipeline, run_options=None) -> None:
        if run_options is not None:
            raise ValueError(
                f"Expected no run_options (partial runs are not supported here). "
                f"Received: run_options={run_options}"
            )
        runtime_parameter_utils.substitute_runtime_parameter(
            pipeline,
            {constants.PIPELINE_RUN_ID_PARAMETER_NAME: datetime.datetime.now().isoformat()},
        )
        deployment = runner_utils.extract_local_deployment_config(pipeline)
        connection = deployment.metadata_connection_config
        connection = getattr(connection, connection.WhichOneof("connection_config"))
        nodes = [n.pipeline_node for n in pipeline.nodes]
        for index, node in enumerate(nodes, start=1):
            node_id = node.node_info.id
            if node.execution_options.HasField("skip"):
                self._on_step(StepEvent(node_id, index, len(nodes), SKIPPED))
                continue
            node_launcher = launcher.Launcher(
                pipeline_node=node,
                mlmd_connection=metadata.Metadata(connection),
                pipeline_info=pipeline.pipeline_info,
                pipeline_runtime_spec=pipeline.runtime_spec,
                executor_spec=runner_utils.extract_executor_spec(deployment, node_id),
                custom_driver_spec=runner_utils.extract_custom_driver_spec(deployment, node_id),
            )
            self._on_step(StepEvent(node_id, index, len(nodes), STARTED))
            started = time.perf_counter()
            try:
                info = node_launcher.launch()
            except Exception as err:
                seconds = time.perf_counter() - started
                self._on_step(StepEvent(node_id, index, len(nodes), FAILED, seconds, err))
                raise
            status = _execution_status(connection, info)
            seconds = time.perf_counter() - started
            self._on_step(StepEvent(node_id, index, len(nodes), status, seconds))


def _execution_status(connection, info) -> str:
    if info is None:  # the driver decided not to run it
        return SKIPPED
    with metadata.Metadata(connection) as handle:
        [execution] = handle.store.get_executions_by_id([info.execution_id])
    return _STATUS.get(execution.last_known_state, COMPLETED)


def prepare_store(config: PipelineConfig) -> None:
    """With an ``s3://`` location: register ``s3://`` here, check every bucket (idempotent).

    Raises:
        ObjectStoreError: an ``s3://`` bucket is missing, refused the credentials or its
            endpoint is unreachable.
        ValueError: contradicting endpoint/region variables, or a URI without a bucket.
    """
    locations = config.locations()
    if s3_uris(locations):
        configure_process()
        check_uris({f"config.{name}": uri for name, uri in locations.items()})


def imported_model_sha256(config: PipelineConfig) -> str | None:
    """SHA-256 of ``<backbone.keras_file>/Format-Serving/model.keras``; None without a
    ``keras_file`` or when the file is missing (the BackboneRegularizer then fails on it)."""
    if not config.backbone.keras_file:
        return None
    from tfx.dsl.io import fileio

    from backbone_regularizer.components import model_artifact

    # Where the BackboneRegularizer's executor reads it from the imported artifact.
    serving = model_artifact.serving_dir(config.path(config.backbone.keras_file))
    path = model_artifact.model_uri(serving)
    if not fileio.exists(path):
        return None
    digest = hashlib.sha256()
    with fileio.open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_local(config: PipelineConfig, on_step: Callable[[StepEvent], None] | None = None) -> float:
    """Run every node of the pipeline locally; return the wall time in seconds.

    Calls ``prepare_store`` first: with a bad ``s3://`` store nothing runs. ``on_step``
    receives a ``StepEvent`` as each node starts and ends.
    """
    started = time.perf_counter()
    prepare_store(config)
    pipeline = create_pipeline(
        config,
        metadata_connection_config=local_metadata(config),
        imported_sha256=imported_model_sha256(config),
    )
    ObservedLocalDagRunner(on_step or _ignore).run(pipeline)
    return time.perf_counter() - started


def _ignore(event: StepEvent) -> None:
    del event

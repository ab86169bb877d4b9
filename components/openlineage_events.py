"""OpenLineage run events for our steps (START, COMPLETE, FAIL), off unless the user asks.

Sent through the official client (``openlineage-python``, the ``openlineage`` extra) and its
transports, configured the client's own way: ``OPENLINEAGE_URL`` (HTTP), ``OPENLINEAGE_CONFIG``
(a YAML file naming any transport: file, http, kafka, ...) or ``OPENLINEAGE__TRANSPORT__*``
variables. With none of them set nothing is imported or sent. Emitting never fails a step: an
unreachable endpoint is logged, and the step's later events are skipped so a down endpoint
costs one attempt per step, not one per event.

Each event: ``job`` ``{namespace: OPENLINEAGE_NAMESPACE or "backbone-regularizer", name:
"<pipeline>.<component>"}``; ``run.runId`` a fresh UUID per step execution, with the
``processing_engine`` facet (TFX version), the ``parent`` facet (the pipeline run, when the
orchestrator gave its id) and, on FAIL, ``errorMessage``; the ``jobType`` job facet; inputs
and outputs as datasets named by OpenLineage's naming rules (``file``/path, ``s3://bucket``/key,
``gs://bucket``/object) with the ``version`` facet holding the artifact's content digest.
"""

from __future__ import annotations

import os
import traceback
import uuid
from collections.abc import Mapping
from typing import Any

from absl import logging

DEFAULT_NAMESPACE = "backbone-regularizer"
PRODUCER = "urn:backbone-regularizer"
# Set any of these (the client's own configuration) to turn events on.
SWITCHES = ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE__TRANSPORT__TYPE")


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    if environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name) for name in SWITCHES)


def dataset_name(uri: str) -> tuple[str, str]:
    """OpenLineage's (namespace, name) of a URI: ``s3://bucket``/key, ``gs://bucket``/object,
    ``file``/absolute path."""
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        bucket, _, path = rest.partition("/")
        return f"{scheme}://{bucket}", path.rstrip("/") or "/"
    return "file", os.path.abspath(uri)


def _producer() -> str:
    from importlib import metadata

    try:
        return f"{PRODUCER}:{metadata.version('backbone-regularizer')}"
    except metadata.PackageNotFoundError:
        return PRODUCER


class StepEvents:
    """The events of one step execution; a no-op when OpenLineage is off."""

    def __init__(self, component: str, orchestrator: Mapping[str, Any], client: Any = None):
        self.component = component
        self.orchestrator = dict(orchestrator)
        self.client = client
        self.run_id = str(uuid.uuid4())
        self.given_up = False

    @classmethod
    def from_environment(cls, component: str, orchestrator: Mapping[str, Any]) -> StepEvents:
        """Events through ``OpenLineageClient()`` when ``enabled()``, else a no-op."""
        if not enabled():
            return cls(component, orchestrator)
        from backbone_regularizer.components.extras import import_extra

        try:
            client_module = import_extra("openlineage.client", "OpenLineage events")
            client = client_module.OpenLineageClient()
        except Exception as err:  # not installed, or a bad configuration: say so, run on
            logging.error(
                "OpenLineage: no events for %s (the step goes on): %s: %s",
                component,
                type(err).__name__,
                err,
            )
            return cls(component, orchestrator)
        return cls(component, orchestrator, client)

    def start(self, inputs: Mapping[str, list[dict]]) -> None:
        self._emit("START", inputs, {})

    def complete(self, inputs: Mapping[str, list[dict]], outputs: Mapping[str, list[dict]]) -> None:
        self._emit("COMPLETE", inputs, outputs)

    def fail(self, inputs: Mapping[str, list[dict]], error: BaseException) -> None:
        self._emit("FAIL", inputs, {}, error)

    def _emit(self, state, inputs, outputs, error: BaseException | None = None) -> None:
        if self.client is None or self.given_up:
            return
        try:
            event = self.event(state, inputs, outputs, error)
            self.client.emit(event)
        except Exception as err:  # an unreachable endpoint must not fail the step
            self.given_up = True
            logging.error(
                "OpenLineage: could not send the %s event of %s (the step goes on; its later "
                "events are skipped): %s: %s",
                state,
                self.component,
                type(err).__name__,
                err,
            )

    def event(self, state: str, inputs, outputs, error: BaseException | None = None):
        """The ``RunEvent`` (openlineage-python's model) for ``state``."""
        from openlineage.client.event_v2 import (
            InputDataset,
            Job,
            OutputDataset,
            Run,
            RunEvent,
            RunState,
        )
        from openlineage.client.generated import (
            dataset_version_dataset,
            error_message_run,
            job_type_job,
            parent_run,
            processing_engine_run,
        )
        from tfx import version as tfx_version

        producer = _producer()
        namespace = os.environ.get("OPENLINEAGE_NAMESPACE") or DEFAULT_NAMESPACE
        pipeline = self.orchestrator.get("pipeline")
        job_name = f"{pipeline}.{self.component}" if pipeline else self.component
        run_facets: dict[str, Any] = {
            "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                version=tfx_version.__version__,
                name="TFX",
                openlineageAdapterVersion=_adapter_version(),
                producer=producer,
            )
        }
        parent_run_id = self.orchestrator.get("run_id")
        if pipeline and parent_run_id:
            # The same UUID in every step of one pipeline run, from its orchestrator id.
            parent_uuid = str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"{PRODUCER}/{pipeline}/{parent_run_id}")
            )
            run_facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=parent_uuid),
                job=parent_run.Job(namespace=namespace, name=pipeline),
                producer=producer,
            )
        if error is not None:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=f"{type(error).__name__}: {error}"[:4000],
                programmingLanguage="python",
                stackTrace="".join(traceback.format_exception(error))[-8000:],
                producer=producer,
            )

        def datasets(cls, links):
            found = []
            for items in links.values():
                for item in items:
                    ds_namespace, ds_name = dataset_name(item["uri"])
                    facets = {
                        "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                            datasetVersion=item["digest"], producer=producer
                        )
                    }
                    found.append(cls(namespace=ds_namespace, name=ds_name, facets=facets))
            return found

        return RunEvent(
            eventType=RunState[state],
            eventTime=_now(),
            run=Run(runId=self.run_id, facets=run_facets),
            job=Job(
                namespace=namespace,
                name=job_name,
                facets={
                    "jobType": job_type_job.JobTypeJobFacet(
                        processingType="BATCH",
                        integration="TFX",
                        jobType="COMPONENT",
                        producer=producer,
                    )
                },
            ),
            inputs=datasets(InputDataset, inputs),
            outputs=datasets(OutputDataset, outputs),
            producer=producer,
        )


def _adapter_version() -> str:
    from importlib import metadata

    return metadata.version("openlineage-python")


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")

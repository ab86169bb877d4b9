"""Write a step's provenance records last, and its OpenLineage events: the executors' one hook.

Class executors wrap ``Do``; the Trainer's ``run_fn`` and function components wrap their body::

    class Executor(base_executor.BaseExecutor):
        @recorded("BackboneRegularizer")
        def Do(self, input_dict, output_dict, exec_properties): ...

    with step("Trainer", inputs, outputs, config, folders={"model": "Format-Serving"}):
        ...  # train, export

On entry the records an earlier attempt left in the outputs are removed and the inputs'
digests taken (from their records, or by hashing); on a normal exit, once the artifacts are
complete and their properties set, every output gets its ``provenance.json``
(``backbone_regularizer.components.provenance``). A step that raises writes no record.
OpenLineage START/COMPLETE/FAIL events go out when the user configured OpenLineage
(``openlineage_events``); they never fail the step.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from absl import logging

from backbone_regularizer.components import provenance
from backbone_regularizer.components.openlineage_events import StepEvents

# Identifiers an orchestrator puts in a step's environment, recorded when present (KFP sets
# KFP_POD_NAME/KFP_POD_UID from the pod; Vertex AI's CustomJob sets CLOUD_ML_*).
ORCHESTRATOR_ENV = (
    "KFP_POD_NAME",
    "KFP_POD_UID",
    "KFP_RUN_ID",
    "KFP_RUN_NAME",
    "CLOUD_ML_PROJECT_ID",
    "CLOUD_ML_JOB_ID",
    "CLOUD_ML_REGION",
)


def orchestrator_ids(context: Any = None, environ: Mapping[str, str] | None = None) -> dict:
    """What the orchestrator gave this step to identify it: the TFX executor context's
    pipeline, node, run and execution ids (LocalDagRunner), its task folder (Kubeflow V2
    entrypoint) and the variables in ``ORCHESTRATOR_ENV``. Absent ones are left out."""
    environ = os.environ if environ is None else environ
    ids: dict[str, Any] = {}
    if context is not None:
        info = getattr(context, "pipeline_info", None)
        node = getattr(context, "pipeline_node", None)
        run_id = getattr(context, "pipeline_run_id", None)
        if info is not None and info.id:
            ids["pipeline"] = info.id
        if node is not None and node.node_info.id:
            ids["node"] = node.node_info.id
        if run_id:
            ids["run_id"] = run_id
        unique_id = getattr(context, "_unique_id", None)
        if unique_id:
            # The MLMD execution id under TFX's launcher; the task folder's name under the
            # Kubeflow V2 entrypoint (which puts its temp dir in that folder).
            ids["execution_id" if run_id else "task"] = str(unique_id)
        tmp_dir = getattr(context, "_tmp_dir", None)
        if tmp_dir and not run_id:
            ids["task_root"] = os.path.dirname(str(tmp_dir).rstrip("/"))
    ids["env"] = {name: environ[name] for name in ORCHESTRATOR_ENV if environ.get(name)}
    if ids.get("run_id"):
        ids["kind"] = "tfx"
    elif ids["env"].get("KFP_POD_NAME"):
        ids["kind"] = "kubeflow"
    elif ids["env"].get("CLOUD_ML_JOB_ID"):
        ids["kind"] = "vertex"
    elif ids.get("task_root"):
        ids["kind"] = "kubeflow-v2-entrypoint"
    else:
        ids["kind"] = "unknown"
    return ids


def artifact_view(artifact: Any) -> dict:
    """``{"uri", "type", "properties"}`` of a TFX artifact (read now) or of such a dict."""
    if isinstance(artifact, Mapping):
        return {"properties": {}, **artifact}
    properties: dict[str, Any] = {}
    for name in sorted(getattr(artifact, "PROPERTIES", None) or {}):
        if artifact.has_property(name):
            properties[name] = getattr(artifact, name)
    for name in sorted(artifact.mlmd_artifact.custom_properties):
        properties[name] = artifact.get_custom_property(name)
    return {
        "uri": artifact.uri,
        "type": artifact.type_name,
        "properties": provenance.json_safe(properties),
    }


def _views(channels: Mapping[str, list]) -> dict[str, list[dict]]:
    return {key: [artifact_view(a) for a in items] for key, items in sorted(channels.items())}


@contextlib.contextmanager
def step(
    component: str,
    inputs: Mapping[str, list],
    outputs: Mapping[str, list],
    exec_properties: Mapping[str, Any],
    *,
    executor: str = "",
    context: Any = None,
    folders: Mapping[str, str] | None = None,
    workers: int = 2,
) -> Iterator[None]:
    """Run a step's body, then write a provenance record into each of its outputs.

    Args:
        component: the step's component name (``BackboneRegularizer``).
        inputs / outputs: channel key -> TFX artifacts or ``{"uri", "type"}`` dicts.
        exec_properties: the step's exec properties or config, recorded as JSON.
        executor: the executor's class path or function, recorded.
        context: the TFX executor context (orchestrator ids), when the step has one.
        folders: output key -> the folder inside the artifact that the record describes
            and lies in (``Format-Serving`` for a Trainer model); the root by default.
        workers: threads hashing files.

    Raises:
        provenance.RecordError: an input's record is malformed.
        Whatever the body raises (no record is written then).
    """
    folders = dict(folders or {})
    orchestrator = orchestrator_ids(context)
    started = provenance.utc_now()
    for items in outputs.values():
        for artifact in items:
            provenance.remove_records(artifact_view(artifact)["uri"])
    input_links: dict[str, list[dict]] = {}
    upstream: list[dict] = []
    for key, views in _views(inputs).items():
        for view in views:
            entry, record = provenance.input_entry(view["uri"], view["type"], workers)
            input_links.setdefault(key, []).append(entry)
            if record is not None:
                upstream.append(record)
    events = StepEvents.from_environment(component, orchestrator)
    events.start(input_links)
    try:
        yield
    except BaseException as err:
        events.fail(input_links, err)
        raise
    hash_started = time.perf_counter()
    entries: dict[str, list[dict]] = {}
    for key, views in _views(outputs).items():
        folder = folders.get(key, "")
        for view in views:
            files = provenance.digest_files(provenance.record_folder(view["uri"], folder), workers)
            entries.setdefault(key, []).append(
                {
                    "key": key,
                    "uri": view["uri"],
                    "type": view["type"],
                    "folder": folder,
                    "properties": view["properties"],
                    "files": files,
                    "digest": provenance.manifest_digest(files),
                }
            )
    step_info = {
        "component": component,
        "executor": executor,
        "started": started,
        "finished": provenance.utc_now(),
        "hash_seconds": round(time.perf_counter() - hash_started, 3),
        "orchestrator": orchestrator,
    }
    links = {
        key: [{k: e[k] for k in ("uri", "type", "digest")} for e in items]
        for key, items in entries.items()
    }
    chain = provenance.merge_chain(upstream)
    packages = provenance.package_versions()
    for items in entries.values():
        for entry in items:
            record = provenance.artifact_record(
                entry, step_info, exec_properties, input_links, links, chain, packages
            )
            path = provenance.write_record(
                provenance.record_folder(entry["uri"], entry["folder"]), record
            )
            logging.info("%s: provenance %s (%s)", component, path, entry["digest"])
    events.complete(input_links, links)


def recorded(component: str):
    """Decorate an executor's ``Do``: ``step`` around it, with the executor's context."""

    def wrap(do):
        @functools.wraps(do)
        def wrapper(self, input_dict, output_dict, exec_properties):
            cls = type(self)
            with step(
                component,
                input_dict,
                output_dict,
                exec_properties,
                executor=f"{cls.__module__}.{cls.__qualname__}",
                context=getattr(self, "_context", None),
            ):
                return do(self, input_dict, output_dict, exec_properties)

        return wrapper

    return wrap

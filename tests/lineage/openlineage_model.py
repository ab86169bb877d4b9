"""Rebuild an OpenLineage event (JSON) with openlineage-python's own event model, strictly.

The client ships classes generated from the published schema (``openlineage.client.event_v2``,
``openlineage.client.generated``) but no JSON schema file and no parser. ``to_model`` builds a
``RunEvent`` from a received event with those classes (their attrs validators check run ids,
times and URLs), refusing any key or facet it does not know; ``round_trip`` serializes the
model again with the client's ``Serde`` and requires the same JSON back.
"""

from __future__ import annotations

from typing import Any

from openlineage.client import event_v2
from openlineage.client.generated import (
    dataset_version_dataset,
    environment_variables_run,
    error_message_run,
    job_type_job,
    parent_run,
    processing_engine_run,
    source_code_location_job,
    tags_job,
    tags_run,
)
from openlineage.client.serde import Serde

# Ours, and those the client itself adds in ``emit`` (tags, environment, source location).
RUN_FACETS = {
    "parent": parent_run.ParentRunFacet,
    "processing_engine": processing_engine_run.ProcessingEngineRunFacet,
    "errorMessage": error_message_run.ErrorMessageRunFacet,
    "tags": tags_run.TagsRunFacet,
    "environmentVariables": environment_variables_run.EnvironmentVariablesRunFacet,
}
JOB_FACETS = {
    "jobType": job_type_job.JobTypeJobFacet,
    "tags": tags_job.TagsJobFacet,
    "sourceCodeLocation": source_code_location_job.SourceCodeLocationJobFacet,
}
# Facet fields holding lists of model objects: (facet class, field) -> item class.
LIST_FIELDS = {
    (tags_run.TagsRunFacet, "tags"): tags_run.TagsRunFacetFields,
    (tags_job.TagsJobFacet, "tags"): tags_job.TagsJobFacetFields,
    (
        environment_variables_run.EnvironmentVariablesRunFacet,
        "environmentVariables",
    ): environment_variables_run.EnvironmentVariable,
}
DATASET_FACETS = {"version": dataset_version_dataset.DatasetVersionDatasetFacet}
EVENT_KEYS = {"eventType", "eventTime", "run", "job", "inputs", "outputs", "producer", "schemaURL"}


def _only(data: dict, allowed: set[str], where: str) -> dict:
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"Expected only {sorted(allowed)} in {where}. Received: {sorted(unknown)}")
    return data


def _facet(classes: dict, name: str, data: dict):
    if name not in classes:
        raise ValueError(f"Expected a facet of {sorted(classes)}. Received: {name!r}")
    cls = classes[name]
    data = dict(data)
    schema, producer = data.pop("_schemaURL"), data.pop("_producer")
    if cls is parent_run.ParentRunFacet:
        data["run"] = parent_run.Run(**_only(data["run"], {"runId", "facets"}, "parent.run"))
        job = _only(data["job"], {"namespace", "name", "facets"}, "parent.job")
        data["job"] = parent_run.Job(**job)
    for (owner, field), item_class in LIST_FIELDS.items():
        if cls is owner and field in data:
            data[field] = [item_class(**item) for item in data[field]]
    facet = cls(**data, producer=producer)
    if facet._schemaURL != schema:
        raise ValueError(f"Expected {name} facet schema {facet._schemaURL}. Received: {schema}")
    return facet


def _facets(classes: dict, data: dict | None) -> dict[str, Any]:
    return {name: _facet(classes, name, value) for name, value in (data or {}).items()}


def _dataset(cls, data: dict):
    own = "inputFacets" if cls is event_v2.InputDataset else "outputFacets"
    _only(data, {"namespace", "name", "facets", own}, "dataset")
    # We send no input/output facets: any there is refused.
    return cls(
        namespace=data["namespace"],
        name=data["name"],
        facets=_facets(DATASET_FACETS, data.get("facets")),
        **{own: _facets({}, data.get(own))},
    )


def to_model(event: dict) -> event_v2.RunEvent:
    _only(event, EVENT_KEYS, "event")
    model_schema = event_v2.RunEvent._get_schema()
    if event["schemaURL"] != model_schema:
        raise ValueError(f"Expected schemaURL {model_schema}. Received: {event['schemaURL']}")
    run = _only(event["run"], {"runId", "facets"}, "run")
    job = _only(event["job"], {"namespace", "name", "facets"}, "job")
    return event_v2.RunEvent(
        eventType=event_v2.RunState(event["eventType"]),
        eventTime=event["eventTime"],
        run=event_v2.Run(runId=run["runId"], facets=_facets(RUN_FACETS, run.get("facets"))),
        job=event_v2.Job(
            namespace=job["namespace"],
            name=job["name"],
            facets=_facets(JOB_FACETS, job.get("facets")),
        ),
        inputs=[_dataset(event_v2.InputDataset, d) for d in event.get("inputs", [])],
        outputs=[_dataset(event_v2.OutputDataset, d) for d in event.get("outputs", [])],
        producer=event["producer"],
    )


def round_trip(event: dict) -> dict:
    """The event rebuilt with the client's model and serialized by the client again."""
    return Serde.to_dict(to_model(event))

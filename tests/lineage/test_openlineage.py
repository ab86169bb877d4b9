"""OpenLineage events of a step: off by default; over HTTP to a server on 127.0.0.1 and to a
file, each event rebuilt with openlineage-python's own model; a down endpoint fails nothing."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from backbone_regularizer.components import provenance
from backbone_regularizer.components.openlineage_events import StepEvents, dataset_name, enabled
from backbone_regularizer.components.provenance_step import step
from tests.http_recorder import Recorder
from tests.lineage.openlineage_model import round_trip, to_model

OPENLINEAGE_ENV = (
    "OPENLINEAGE_URL",
    "OPENLINEAGE_CONFIG",
    "OPENLINEAGE__TRANSPORT__TYPE",
    "OPENLINEAGE_DISABLED",
    "OPENLINEAGE_NAMESPACE",
)


@pytest.fixture(autouse=True)
def no_openlineage_settings(monkeypatch, tmp_path):
    for name in OPENLINEAGE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no openlineage.yml of the working directory


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.close()


def artifacts(tmp_path):
    source = tmp_path / "source"
    (source / "Format-Serving").mkdir(parents=True)
    (source / "Format-Serving" / "model.keras").write_bytes(b"backbone")
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.keras").write_bytes(b"regularized")
    return {"uri": str(source), "type": "Model"}, {"uri": str(out), "type": "Model"}


def run_steps(tmp_path):
    """A loader, a regularizer that succeeds, and one that fails."""
    source, out = artifacts(tmp_path)
    with step("BackboneLoader", {}, {"backbone": [source]}, {}):
        pass
    with step("BackboneRegularizer", {"backbone": [source]}, {"model": [out]}, {}):
        pass
    with pytest.raises(ValueError, match="check failed"):
        with step("BackboneRegularizer", {"backbone": [source]}, {"model": [out]}, {}):
            raise ValueError("check failed")
    return source, out


def test_off_by_default_and_switches():
    assert not enabled({})
    assert enabled({"OPENLINEAGE_URL": "http://127.0.0.1:5000"})
    assert enabled({"OPENLINEAGE_CONFIG": "/etc/openlineage.yml"})
    assert enabled({"OPENLINEAGE__TRANSPORT__TYPE": "file"})
    assert not enabled({"OPENLINEAGE_URL": "http://x", "OPENLINEAGE_DISABLED": "true"})
    assert StepEvents.from_environment("Trainer", {}).client is None


def test_dataset_names_follow_openlineage_naming():
    assert dataset_name("s3://bucket/root/Trainer/model/") == ("s3://bucket", "root/Trainer/model")
    assert dataset_name("gs://b/x/y") == ("gs://b", "x/y")
    assert dataset_name("/data/x") == ("file", "/data/x")


def test_events_arrive_over_http_and_pass_the_clients_model(tmp_path, monkeypatch, recorder):
    monkeypatch.setenv("OPENLINEAGE_URL", recorder.url)
    monkeypatch.setenv("OPENLINEAGE_NAMESPACE", "team-vision")
    source, out = run_steps(tmp_path)
    assert [r["path"] for r in recorder.requests] == ["/api/v1/lineage"] * 6
    events = [r["body"] for r in recorder.requests]
    for event in events:
        assert round_trip(event) == event
    assert [(e["job"]["name"], e["eventType"]) for e in events] == [
        ("BackboneLoader", "START"),
        ("BackboneLoader", "COMPLETE"),
        ("BackboneRegularizer", "START"),
        ("BackboneRegularizer", "COMPLETE"),
        ("BackboneRegularizer", "START"),
        ("BackboneRegularizer", "FAIL"),
    ]
    assert {e["job"]["namespace"] for e in events} == {"team-vision"}
    # One run id per step execution, shared by its events.
    run_ids = [e["run"]["runId"] for e in events]
    assert run_ids[0] == run_ids[1] != run_ids[2] == run_ids[3] != run_ids[4] == run_ids[5]
    loader = provenance.read_record(provenance.find_record(source["uri"]))
    regularizer_complete = events[3]
    assert regularizer_complete["inputs"] == [
        {
            "namespace": "file",
            "name": source["uri"],
            "facets": {
                "version": {
                    "_producer": regularizer_complete["producer"],
                    "_schemaURL": to_model(events[3]).inputs[0].facets["version"]._schemaURL,
                    "datasetVersion": loader["artifact"]["digest"],
                }
            },
            "inputFacets": {},
        }
    ]
    [output] = regularizer_complete["outputs"]
    assert output["name"] == out["uri"]
    assert output["facets"]["version"]["datasetVersion"].startswith("sha256:")
    assert events[2]["outputs"] == []  # START: outputs not made yet
    fail = events[5]["run"]["facets"]["errorMessage"]
    assert fail["message"] == "ValueError: check failed"
    assert fail["programmingLanguage"] == "python" and "check failed" in fail["stackTrace"]
    engine = events[0]["run"]["facets"]["processing_engine"]
    assert engine["name"] == "TFX" and engine["version"] == "1.16.0"


def test_events_go_to_a_file_with_the_clients_file_transport(tmp_path, monkeypatch):
    log = tmp_path / "events.jsonl"
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(log))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    run_steps(tmp_path)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] * 2 + ["START", "FAIL"]
    for event in events:
        assert round_trip(event) == event


def test_the_parent_facet_names_the_pipeline_run(recorder, monkeypatch):
    monkeypatch.setenv("OPENLINEAGE_URL", recorder.url)
    orchestrator = {"pipeline": "demo", "run_id": "2026-12-02T10:00:00", "kind": "tfx"}
    events = StepEvents.from_environment("Trainer", orchestrator)
    events.start({})
    other = StepEvents.from_environment("Pusher", orchestrator)
    other.start({})
    first, second = (r["body"] for r in recorder.requests)
    assert round_trip(first) == first
    assert first["job"]["name"] == "demo.Trainer"
    parent = first["run"]["facets"]["parent"]
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("backbone-regularizer", "demo")
    assert parent["run"] == second["run"]["facets"]["parent"]["run"]  # same pipeline run


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_down_endpoint_is_logged_and_fails_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OPENLINEAGE_URL", f"http://127.0.0.1:{closed_port()}")
    source, out = artifacts(tmp_path)
    started = time.perf_counter()
    with caplog.at_level(logging.ERROR):
        with step("BackboneRegularizer", {"backbone": [source]}, {"model": [out]}, {}):
            pass
    seconds = time.perf_counter() - started
    assert provenance.find_record(out["uri"])  # the step completed and published its record
    messages = [r.getMessage() for r in caplog.records if "OpenLineage" in r.getMessage()]
    assert len(messages) == 1, messages  # START failed; COMPLETE was not attempted
    assert "could not send the START event of BackboneRegularizer" in messages[0]
    assert "ConnectionError" in messages[0] or "Connection" in messages[0]
    # The client's own retries (5, backoff 0.3 s) bound the cost: one attempt per step.
    assert seconds < 30, seconds


def test_without_the_extra_the_step_runs_and_the_log_names_the_extra(tmp_path, monkeypatch, caplog):
    import sys

    monkeypatch.setenv("OPENLINEAGE_URL", "http://127.0.0.1:9")
    monkeypatch.setitem(sys.modules, "openlineage.client", None)  # as if not installed
    source, out = artifacts(tmp_path)
    with caplog.at_level(logging.ERROR):
        with step("BackboneRegularizer", {"backbone": [source]}, {"model": [out]}, {}):
            pass
    assert provenance.find_record(out["uri"])
    [message] = [r.getMessage() for r in caplog.records if "OpenLineage" in r.getMessage()]
    assert "no events for BackboneRegularizer (the step goes on): MissingExtraError" in message
    assert "pip install 'backbone-regularizer[openlineage]'" in message

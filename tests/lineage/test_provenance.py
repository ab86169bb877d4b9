"""Provenance records: digests, writing last, safe reading of hostile records, verification."""

from __future__ import annotations

import hashlib
import json

import pytest

from backbone_regularizer.components import provenance
from backbone_regularizer.components.provenance_step import orchestrator_ids, step


def write_tree(folder, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def make_artifact(tmp_path, name="a", files=None):
    folder = tmp_path / name
    write_tree(folder, files or {"Format-Serving/model.keras": b"weights", "report.json": b"{}"})
    return {"uri": str(folder), "type": "Model"}


def test_digests_are_sha256_of_each_file_and_of_the_sorted_manifest(tmp_path):
    write_tree(tmp_path, {"b/x.bin": b"x" * (3 * provenance.CHUNK_BYTES + 5), "a.txt": b"hi"})
    files = provenance.digest_files(str(tmp_path))
    assert list(files) == ["a.txt", "b/x.bin"]
    assert files["a.txt"] == {"sha256": hashlib.sha256(b"hi").hexdigest(), "bytes": 2}
    big = hashlib.sha256(b"x" * (3 * provenance.CHUNK_BYTES + 5)).hexdigest()
    assert files["b/x.bin"] == {"sha256": big, "bytes": 3 * provenance.CHUNK_BYTES + 5}
    lines = f"a.txt\t{files['a.txt']['sha256']}\t2\nb/x.bin\t{big}\t{3 * 2**20 + 5}\n"
    assert (
        provenance.manifest_digest(files) == "sha256:" + hashlib.sha256(lines.encode()).hexdigest()
    )
    (tmp_path / provenance.RECORD_FILE).write_text("{}")  # a folder's own record is no file of it
    assert provenance.digest_files(str(tmp_path)) == files


def records_of(uri: str) -> dict:
    return provenance.read_record(provenance.find_record(uri))


def test_step_writes_a_record_last_in_every_output_with_the_inputs_digests(tmp_path):
    source = make_artifact(tmp_path, "source")
    with step("BackboneLoader", {}, {"backbone": [source]}, {"weights": "none", "_beam": "x"}):
        pass
    loader = records_of(source["uri"])
    assert loader["schema"] == provenance.SCHEMA and loader["version"] == provenance.VERSION
    assert loader["exec_properties"] == {"weights": "none"}  # TFX's private ones left out
    assert loader["artifact"]["files"].keys() == {"Format-Serving/model.keras", "report.json"}
    assert loader["packages"]["keras"] and loader["step"]["component"] == "BackboneLoader"

    foreign = make_artifact(tmp_path, "imported", {"schema.pbtxt": b"feature {}"})
    out = {"uri": str(tmp_path / "out"), "type": "Model"}
    run = {"uri": str(tmp_path / "run"), "type": "ModelRun"}

    with step(
        "Trainer",
        {"base_model": [source], "schema": [foreign]},
        {"model": [out], "model_run": [run]},
        {"custom_config": {"epochs": 1}},
        folders={"model": "Format-Serving"},
    ):
        write_tree(tmp_path / "out", {"Format-Serving/saved_model.pb": b"pb"})
        write_tree(tmp_path / "run", {"training_summary.json": b"{}"})
        # Written last: nothing is there while the body runs.
        assert provenance.find_record(out["uri"]) is None
    trained = records_of(out["uri"])
    assert provenance.find_record(out["uri"]).endswith("out/Format-Serving/provenance.json")
    assert trained["artifact"]["folder"] == "Format-Serving"
    assert list(trained["artifact"]["files"]) == ["saved_model.pb"]  # relative to the folder
    base, schema = trained["inputs"]["base_model"][0], trained["inputs"]["schema"][0]
    assert base["digest"] == loader["artifact"]["digest"] and base["digest_from"] == "record"
    assert schema["digest_from"] == "hashed" and schema["files"] == 1
    assert schema["digest"] == provenance.manifest_digest(provenance.digest_files(foreign["uri"]))
    assert [r["step"]["component"] for r in trained["chain"]] == ["BackboneLoader"]
    assert "chain" not in trained["chain"][0]
    assert (
        trained["outputs"]["model_run"][0]["digest"] == records_of(run["uri"])["artifact"]["digest"]
    )


def test_a_failed_step_writes_no_record_and_removes_a_stale_one(tmp_path):
    out = make_artifact(tmp_path, "out")
    with step("BackboneRegularizer", {}, {"model": [out]}, {}):
        pass
    assert provenance.find_record(out["uri"])  # a first attempt completed...
    with pytest.raises(RuntimeError, match="check 3 failed"):
        with step("BackboneRegularizer", {}, {"model": [out]}, {}):
            raise RuntimeError("check 3 failed")
    assert provenance.find_record(out["uri"]) is None  # ...the retry failed: no record


def test_orchestrator_ids_are_recorded_as_given():
    class Info:
        id = "demo"

    class Node:
        class node_info:  # noqa: N801 - the proto's field name
            id = "Trainer"

    class Context:
        pipeline_info, pipeline_node, pipeline_run_id = Info(), Node(), "2026-12-02T10:00"
        _unique_id, _tmp_dir = "7", "/tmp/x"

    ids = orchestrator_ids(Context(), environ={"KFP_POD_NAME": "", "HOME": "/root"})
    assert ids == {
        "pipeline": "demo",
        "node": "Trainer",
        "run_id": "2026-12-02T10:00",
        "execution_id": "7",
        "env": {},
        "kind": "tfx",
    }

    class KfpContext:
        pipeline_info = pipeline_node = pipeline_run_id = None
        _unique_id, _tmp_dir = "trainer", "/root/run-1/trainer/.temp"

    env = {"KFP_POD_NAME": "run-1-trainer-pod", "KFP_POD_UID": "uid", "AWS_SECRET_ACCESS_KEY": "s"}
    ids = orchestrator_ids(KfpContext(), environ=env)
    assert ids == {
        "task": "trainer",
        "task_root": "/root/run-1/trainer",
        "env": {"KFP_POD_NAME": "run-1-trainer-pod", "KFP_POD_UID": "uid"},
        "kind": "kubeflow",
    }
    assert orchestrator_ids(None, environ={"CLOUD_ML_JOB_ID": "123"})["kind"] == "vertex"
    assert orchestrator_ids(None, environ={}) == {"env": {}, "kind": "unknown"}


def test_verify_names_changed_missing_and_unlisted_files(tmp_path):
    out = make_artifact(tmp_path, "out", {"a": b"1", "sub/b": b"2", "c": b"3"})
    files = provenance.digest_files(out["uri"])
    assert provenance.verify_files(out["uri"], files) == []
    (tmp_path / "out" / "sub" / "b").write_bytes(b"two")
    (tmp_path / "out" / "c").unlink()
    (tmp_path / "out" / "d").write_bytes(b"new")
    problems = {
        p["file"].rsplit("/out/", 1)[1]: p for p in provenance.verify_files(out["uri"], files)
    }
    assert {k: p["problem"] for k, p in problems.items()} == {
        "sub/b": "changed",
        "c": "missing",
        "d": "not in the record",
    }
    assert problems["sub/b"]["expected"] == files["sub/b"]["sha256"]
    assert problems["sub/b"]["received"] == hashlib.sha256(b"two").hexdigest()


# ---------------------------------------------------------------------------------------------
# Hostile and malformed records: each is a RecordError naming the problem, never a crash.


@pytest.fixture
def good(tmp_path) -> dict:
    out = make_artifact(tmp_path, "out")
    with step("BackboneLoader", {}, {"backbone": [out]}, {}):
        pass
    return records_of(out["uri"])


def parse(record) -> dict:
    return provenance.parse_record(json.dumps(record).encode())


def test_a_good_record_round_trips(good):
    assert parse(good) == good


@pytest.mark.parametrize(
    "path",
    ["../../etc/passwd", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\..\\b", "", "s3://b/k"],
)
def test_file_names_that_leave_the_folder_are_refused(good, path):
    files = {path: {"sha256": "0" * 64, "bytes": 1}}
    good["artifact"]["files"] = files
    good["artifact"]["digest"] = provenance.manifest_digest(files)
    with pytest.raises(provenance.RecordError, match="relative to the artifact folder"):
        parse(good)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(version="1"), "Expected record.version 1"),
        (lambda r: r.update(version=2), "Expected record.version 1"),
        (lambda r: r.update(schema="pickle"), "Expected record.schema"),
        (lambda r: r["artifact"].update(files=["a"]), "Expected record.artifact.files to be dict"),
        (lambda r: r["artifact"].update(digest="md5:0"), "to be a SHA-256 in hex"),
        (lambda r: r["artifact"].update(digest="sha256:" + "0" * 64), "digest of record.artifact"),
        (lambda r: r["step"].update(component=7), "Expected record.step.component to be str"),
        (lambda r: r.update(inputs={"x": "y"}), r"Expected record.inputs\['x'\] to be list"),
        (lambda r: r.update(chain={}), "Expected record.chain to be list"),
        (lambda r: r.update(chain=[{"schema": 1}]), r"Expected record.chain\[0\].schema"),
        (lambda r: r.update(chain=[dict(r)]), r"record.chain\[0\] without a chain of its own"),
    ],
)
def test_wrong_types_and_values_are_named(good, change, message):
    change(good)
    with pytest.raises(provenance.RecordError, match=message):
        parse(good)


def test_negative_sizes_and_bad_file_entries_are_refused(good):
    name = next(iter(good["artifact"]["files"]))
    good["artifact"]["files"][name]["bytes"] = -1
    good["artifact"]["digest"] = provenance.manifest_digest(good["artifact"]["files"])
    with pytest.raises(provenance.RecordError, match="bytes >= 0"):
        parse(good)
    good["artifact"]["files"][name]["bytes"] = True  # bool is no int here
    with pytest.raises(provenance.RecordError, match="bytes to be int"):
        parse(good)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[" * 200_000 + b"]" * 200_000, "nested at most 16 levels"),
        (b'{"a":' * 20 + b"1" + b"}" * 20, "nested at most 16 levels"),
        (b'{"schema": 1, "schema": 2}', "unique keys. Received: 'schema' twice"),
        (b'{"x": NaN}', "finite JSON numbers. Received: NaN"),
        (b'{"x": Infinity}', "finite JSON numbers. Received: Infinity"),
        (b"\xff\xfe", "Expected UTF-8 JSON"),
        (b'{"x": ', "Expected a JSON provenance record"),
        (b"cos\nsystem\n(S'echo pwned'\ntR.", "Expected a JSON provenance record"),  # a pickle
        (b"[]", "Expected record to be dict"),
    ],
)
def test_hostile_bytes_are_a_clear_error(data, message):
    with pytest.raises(provenance.RecordError, match=message):
        provenance.parse_record(data, where="test")


def test_a_huge_record_is_refused_before_reading_it(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "MAX_RECORD_BYTES", 1000)
    path = tmp_path / provenance.RECORD_FILE
    path.write_text(json.dumps({"padding": "x" * 2000}))
    with pytest.raises(provenance.RecordError, match="at most 1000 bytes. Received: 2015 bytes"):
        provenance.read_record(str(path))
    with pytest.raises(provenance.RecordError, match="Expected a provenance record. Received: no"):
        provenance.read_record(str(tmp_path / "none.json"))


def test_an_input_with_a_malformed_record_fails_the_step(tmp_path):
    source = make_artifact(tmp_path, "source")
    (tmp_path / "source" / provenance.RECORD_FILE).write_text('{"schema": "x"}')
    out = make_artifact(tmp_path, "out")
    with pytest.raises(provenance.RecordError, match=r"Expected record.schema .*source"):
        with step("BackboneRegularizer", {"backbone": [source]}, {"model": [out]}, {}):
            pass
    assert provenance.find_record(out["uri"]) is None

"""The Model artifact contract: file names, where they lie, publish and fetch."""

import os

import pytest

from backbone_regularizer.components import model_artifact
from backbone_regularizer.pipeline import trainer


def test_paths_spell_out_the_layout():
    serving = model_artifact.serving_dir("gs://bucket/BackboneRegularizer/model/7")
    assert serving == "gs://bucket/BackboneRegularizer/model/7/Format-Serving"
    assert model_artifact.model_uri(serving) == f"{serving}/model.keras"
    report = "gs://bucket/BackboneRegularizer/model/7/regularization_report.json"
    assert model_artifact.report_uri(serving) == report
    assert model_artifact.report_uri(serving + "/") == report  # fn_args may end in a slash
    # The Trainer-side public name is the contract's own.
    assert trainer.report_uri is model_artifact.report_uri


def test_publish_writes_the_model_and_the_report_and_fetch_copies_the_model_out(tmp_path):
    (tmp_path / "local.keras").write_bytes(b"model bytes")
    (tmp_path / "local.json").write_text("{}")
    uri = str(tmp_path / "artifact")
    model_artifact.publish(uri, tmp_path / "local.keras", tmp_path / "local.json")
    assert sorted(os.listdir(uri)) == ["Format-Serving", "regularization_report.json"]
    assert os.listdir(os.path.join(uri, "Format-Serving")) == ["model.keras"]
    # A second publish to the same URI (a retried step) leaves the same files.
    (tmp_path / "local.keras").write_bytes(b"new model bytes")
    model_artifact.publish(uri, tmp_path / "local.keras", tmp_path / "local.json")
    (tmp_path / "out").mkdir()
    local = model_artifact.fetch_model(model_artifact.serving_dir(uri), tmp_path / "out")
    assert local == str(tmp_path / "out" / "model.keras")
    assert open(local, "rb").read() == b"new model bytes"


def test_publish_without_a_report_writes_the_model_only(tmp_path):
    (tmp_path / "local.keras").write_bytes(b"model bytes")
    uri = str(tmp_path / "artifact")
    model_artifact.publish(uri, tmp_path / "local.keras")
    assert os.listdir(uri) == ["Format-Serving"]


def test_fetch_from_an_artifact_without_a_model_names_what_was_expected(tmp_path):
    serving = model_artifact.serving_dir(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError) as err:
        model_artifact.fetch_model(serving, tmp_path, role="backbone")
    assert str(err.value) == (
        "Expected the backbone artifact to hold model.keras under Format-Serving. "
        f"Received: no file at {os.path.join(serving, 'model.keras')!r}"
    )

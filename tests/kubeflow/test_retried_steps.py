"""A retried step on the output URI its killed attempt left: every executor of ours starts over
there and publishes a complete artifact of its own, never a mix of two attempts.

Kubeflow retries a task with the same ExecutorInput, so the same output URIs
(kubeflow/pipelines#13175). Each test fills the URI with what a killed attempt leaves (a
half-copied model, a stale report, the publish staging folder, temp folders), runs the
executor's ``Do`` as the retry would, and checks exactly what the URI holds afterwards.
tests/kubeflow/test_kfp_local_retries.py kills the real processes under kfp.local.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import pytest
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts

from backbone_regularizer.components import model_artifact, provenance
from backbone_regularizer.components.backbone_loader import component_spec as loader_cs
from backbone_regularizer.components.backbone_loader.executor import Executor as LoaderExecutor
from backbone_regularizer.components.image_ingestion.images import label_map_to_json
from backbone_regularizer.components.image_ingestion.labels import LABEL_MAP_FILE
from backbone_regularizer.components.latest_pushed.component import (
    BASELINE_SOURCE,
    LatestPushedModel,
)
from backbone_regularizer.components.regularizer import RegularizationSpec
from backbone_regularizer.components.regularizer import component_spec as reg_cs
from backbone_regularizer.components.regularizer.executor import Executor as RegularizerExecutor
from tests.image_ingestion.folders import names_in_split, write_images
from tests.image_ingestion.test_executor import run_do, split_files

STALE = b"left by the killed attempt"


def files_under(root: str | Path) -> dict[str, bytes]:
    """Relative path -> contents of every file under ``root``."""
    found = {}
    for parent, _, names in os.walk(root):
        for name in names:
            path = os.path.join(parent, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def assert_fresh_record(uri: str | Path) -> None:
    """The artifact's provenance record is this attempt's: it lists exactly the files there."""
    record = provenance.read_record(provenance.find_record(str(uri)))
    folder = os.path.dirname(provenance.find_record(str(uri)))
    assert provenance.verify_files(folder, record["artifact"]["files"]) == []


def leave_a_killed_attempt(uri: str | Path, *paths: str) -> None:
    """What an attempt killed while publishing leaves: its staging folder, half-written
    files, temp folders, a stale report."""
    for relative in (
        f"{model_artifact.STAGING_DIR}/Format-Serving/model.keras",
        ".regularize-x1y2/model.keras",
        *paths,
    ):
        target = Path(uri) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(STALE)


# -- the contract: stage, then replace ------------------------------------------------------


def test_publish_replaces_everything_a_killed_attempt_left(tmp_path):
    uri = tmp_path / "artifact"
    leave_a_killed_attempt(
        uri, "Format-Serving/model.keras", "regularization_report.json", "Format-Serving/old.bin"
    )
    (tmp_path / "model.keras").write_bytes(b"new model")
    (tmp_path / "report.json").write_text('{"new": true}')

    model_artifact.publish(str(uri), tmp_path / "model.keras", tmp_path / "report.json")

    assert files_under(uri) == {
        "Format-Serving/model.keras": b"new model",
        "regularization_report.json": b'{"new": true}',
    }


def test_publish_moves_the_file_readers_look_for_last(tmp_path, monkeypatch):
    moved = []
    rename = fileio.rename

    def recording_rename(source, target, overwrite=False):
        moved.append(os.path.relpath(target, tmp_path / "artifact"))
        rename(source, target, overwrite)

    monkeypatch.setattr(fileio, "rename", recording_rename)
    (tmp_path / "model.keras").write_bytes(b"model")
    (tmp_path / "report.json").write_text("{}")
    model_artifact.publish(
        str(tmp_path / "artifact"), tmp_path / "model.keras", tmp_path / "report.json"
    )
    assert moved == ["regularization_report.json", "Format-Serving/model.keras"]


def test_publish_folder_copies_a_tree_deepest_files_first_and_refuses_an_empty_one(tmp_path):
    source = tmp_path / "export"
    (source / "variables").mkdir(parents=True)
    (source / "assets").mkdir()  # empty, as in a SavedModel
    (source / "variables" / "variables.index").write_bytes(b"index")
    (source / "saved_model.pb").write_bytes(b"graph")
    (source / "model.keras").write_bytes(b"keras")
    target = tmp_path / "model" / "Format-Serving"
    leave_a_killed_attempt(target, "saved_model.pb", "variables/variables.data-00000-of-00002")

    model_artifact.publish_folder(str(target), source, last="saved_model.pb")

    assert files_under(target) == files_under(source)
    assert sorted(os.listdir(target)) == ["assets", "model.keras", "saved_model.pb", "variables"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="^Expected files to publish. Received: "):
        model_artifact.publish_folder(str(target), tmp_path / "empty")
    assert files_under(target) == files_under(source)  # nothing removed by a refused publish


@pytest.mark.parametrize("relative", ["../outside.keras", "/abs/model.keras", ".staging/x"])
def test_publish_files_refuses_paths_outside_the_folder(tmp_path, relative):
    (tmp_path / "x").write_bytes(b"x")
    with pytest.raises(ValueError) as error:
        model_artifact.publish_files(str(tmp_path / "artifact"), {relative: tmp_path / "x"})
    assert str(error.value) == (
        f"Expected paths inside the artifact folder. Received: {relative!r}"
    )
    assert not (tmp_path / "artifact").exists()


# -- every executor of ours, retried on a used URI -------------------------------------------


def test_backbone_loader_retried_on_a_used_uri(tmp_path):
    output = standard_artifacts.Model()
    output.uri = str(tmp_path / "backbone")
    leave_a_killed_attempt(output.uri, "Format-Serving/model.keras")
    LoaderExecutor().Do(
        {},
        {loader_cs.BACKBONE_KEY: [output]},
        {
            loader_cs.ARCHITECTURE_KEY: "MobileNetV2",
            loader_cs.WEIGHTS_KEY: "none",
            loader_cs.INPUT_SHAPE_KEY: "[32, 32, 3]",
            loader_cs.POOLING_KEY: "none",
            loader_cs.KWARGS_KEY: json.dumps({"alpha": 0.35}),
        },
    )
    assert sorted(files_under(output.uri)) == ["Format-Serving/model.keras", "provenance.json"]
    assert_fresh_record(output.uri)
    model = keras.saving.load_model(os.path.join(output.uri, "Format-Serving", "model.keras"))
    assert model.count_params() == output.get_int_custom_property(loader_cs.PROP_PARAMETER_COUNT)


def test_backbone_regularizer_retried_on_a_used_uri(tmp_path):
    backbone = standard_artifacts.Model()
    backbone.uri = str(tmp_path / "backbone")
    source = keras.applications.MobileNetV2(
        (32, 32, 3), alpha=0.35, include_top=False, weights=None
    )
    os.makedirs(model_artifact.serving_dir(backbone.uri))
    source.save(model_artifact.model_uri(model_artifact.serving_dir(backbone.uri)))
    output = standard_artifacts.Model()
    output.uri = str(tmp_path / "regularized")
    leave_a_killed_attempt(output.uri, "Format-Serving/model.keras", "regularization_report.json")

    RegularizerExecutor().Do(
        {reg_cs.BACKBONE_KEY: [backbone]},
        {reg_cs.MODEL_KEY: [output]},
        {reg_cs.SPEC_KEY: RegularizationSpec(l2=1e-4).to_json(), reg_cs.SAFE_MODE_KEY: 1},
    )

    files = files_under(output.uri)
    assert sorted(files) == [
        "Format-Serving/model.keras",
        "provenance.json",
        "regularization_report.json",
    ]
    assert_fresh_record(output.uri)
    report = json.loads(files["regularization_report.json"])
    assert report["validation"]["passed"] is True
    assert report["checksums"]["weights_sha256"] == output.get_string_custom_property(
        reg_cs.PROP_WEIGHTS_SHA256
    )
    reloaded = keras.saving.load_model(os.path.join(output.uri, "Format-Serving", "model.keras"))
    assert len(reloaded.losses) == output.get_int_custom_property(reg_cs.PROP_REGULARIZED)


def test_latest_pushed_model_retried_on_a_used_uri(tmp_path):
    pushed = tmp_path / "serving" / "1700000000"
    (pushed / "variables").mkdir(parents=True)
    (pushed / "saved_model.pb").write_bytes(b"graph")
    (pushed / "variables" / "variables.index").write_bytes(b"index")
    label_map = label_map_to_json({"cat": 0, "dog": 1}).encode()
    (pushed / LABEL_MAP_FILE).write_bytes(label_map)
    candidate = standard_artifacts.Model()
    candidate.uri = str(tmp_path / "candidate")
    os.makedirs(model_artifact.serving_dir(candidate.uri))
    Path(model_artifact.serving_dir(candidate.uri), LABEL_MAP_FILE).write_bytes(label_map)
    baseline = standard_artifacts.Model()
    baseline.uri = str(tmp_path / "baseline")
    leave_a_killed_attempt(model_artifact.serving_dir(baseline.uri), "saved_model.pb")

    executor = LatestPushedModel.EXECUTOR_SPEC.executor_class()
    executor.Do(
        {"model": [candidate]},
        {"baseline": [baseline]},
        {"push_destination": str(tmp_path / "serving")},
    )

    files = files_under(baseline.uri)
    record = files.pop(f"Format-Serving/{provenance.RECORD_FILE}", None) or files.pop(
        provenance.RECORD_FILE
    )
    assert json.loads(record)["schema"] == provenance.SCHEMA
    assert files == {
        "Format-Serving/saved_model.pb": b"graph",
        "Format-Serving/variables/variables.index": b"index",
        f"Format-Serving/{LABEL_MAP_FILE}": label_map,
    }
    assert_fresh_record(baseline.uri)
    assert baseline.get_string_custom_property(BASELINE_SOURCE) == str(pushed)


def test_image_example_gen_retried_on_a_used_uri(tmp_path):
    base = str(tmp_path / "pets")
    write_images(base, names_in_split("cat", "train", 3) + names_in_split("dog", "eval", 1))
    uri = tmp_path / "output" / "examples"
    leave_a_killed_attempt(uri, "Split-train/data_tfrecord-00001-of-00002.gz", "stray.json")

    examples, _ = run_do(tmp_path, base)

    assert sorted(os.listdir(examples.uri)) == ["Split-eval", "Split-train", "provenance.json"]
    assert_fresh_record(examples.uri)
    assert [os.path.basename(f) for f in split_files(examples, "train")] == [
        "data_tfrecord-00000-of-00001.gz"
    ]

"""BackboneRegularizer: construction, executor Do() on tiny data, and a LocalDagRunner run."""

import json
import os

import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import channel_utils, standard_artifacts

from backbone_regularizer.components.regularizer import (
    BackboneRegularizer,
    RegularizationSpec,
    VerificationError,
)
from backbone_regularizer.components.regularizer import component_spec as cs
from backbone_regularizer.components.regularizer.executor import Executor
from tests import zoo

SPEC = RegularizationSpec(l2=1e-4, exclude=("head",))


def model_channel():
    return channel_utils.as_channel([standard_artifacts.Model()])


def test_construction_declares_types_and_exec_properties():
    component = BackboneRegularizer(backbone=model_channel(), spec=SPEC)
    assert component.outputs[cs.MODEL_KEY].type == standard_artifacts.Model
    assert component.inputs[cs.BACKBONE_KEY].type == standard_artifacts.Model
    assert component.exec_properties[cs.SPEC_KEY] == SPEC.to_json()
    assert component.exec_properties[cs.SAFE_MODE_KEY] == 1
    assert RegularizationSpec.from_json(component.exec_properties[cs.SPEC_KEY]) == SPEC


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backbone": "gs://bucket/model", "spec": SPEC}, "channel of standard_artifacts.Model"),
        (
            {"backbone": channel_utils.as_channel([standard_artifacts.Examples()]), "spec": SPEC},
            "channel of standard_artifacts.Model",
        ),
        ({"spec": {"l2": 1e-4}}, "RegularizationSpec"),
        ({"spec": SPEC, "safe_mode": 0}, "bool"),
    ],
)
def test_construction_errors_at_build_time(kwargs, message):
    kwargs.setdefault("backbone", model_channel())
    with pytest.raises(TypeError, match=message):
        BackboneRegularizer(**kwargs)


def make_backbone_artifact(tmp_path, model):
    backbone = standard_artifacts.Model()
    backbone.uri = str(tmp_path / "backbone")
    os.makedirs(os.path.join(backbone.uri, "Format-Serving"))
    model.save(os.path.join(backbone.uri, "Format-Serving", cs.MODEL_FILE))
    return backbone


def run_executor(tmp_path, model, spec=SPEC):
    output = standard_artifacts.Model()
    output.uri = str(tmp_path / "output")
    Executor().Do(
        {cs.BACKBONE_KEY: [make_backbone_artifact(tmp_path, model)]},
        {cs.MODEL_KEY: [output]},
        {cs.SPEC_KEY: spec.to_json(), cs.SAFE_MODE_KEY: 1},
    )
    return output


def test_executor_writes_model_report_and_properties(tmp_path):
    output = run_executor(tmp_path, zoo.nested_backbone_with_head())
    model_path = os.path.join(output.uri, "Format-Serving", cs.MODEL_FILE)
    report = json.loads(open(os.path.join(output.uri, cs.REPORT_FILE)).read())
    assert os.path.exists(model_path)
    assert report["validation"]["passed"] is True
    assert output.get_int_custom_property(cs.PROP_REGULARIZED) == 52
    assert output.get_int_custom_property(cs.PROP_SKIPPED) == len(report["skipped"])
    assert output.get_int_custom_property(cs.PROP_VALIDATION_PASSED) == 1
    assert output.get_int_custom_property(cs.PROP_SAFE_MODE) == 1
    assert (
        output.get_string_custom_property(cs.PROP_WEIGHTS_SHA256)
        == (report["checksums"]["weights_sha256"])
    )
    assert output.get_float_custom_property(cs.PROP_PENALTY) == pytest.approx(
        report["penalty"]["total_in_loss"]
    )
    assert output.get_string_custom_property(cs.PROP_REGULARIZER) == "L2(l2=0.0001)"
    assert output.get_string_custom_property(cs.PROP_KERAS_VERSION) == "3.12.4"
    assert output.get_string_custom_property(cs.PROP_TF_VERSION) == tf.__version__


def test_executor_same_input_same_checksum(tmp_path):
    model = zoo.mobilenet_v2(include_top=False)
    first = run_executor(tmp_path / "a", model, RegularizationSpec(l2=1e-4))
    second = run_executor(tmp_path / "b", model, RegularizationSpec(l2=1e-4))
    assert first.get_string_custom_property(cs.PROP_WEIGHTS_SHA256) == (
        second.get_string_custom_property(cs.PROP_WEIGHTS_SHA256)
    )


def test_executor_failed_check_publishes_nothing(tmp_path, monkeypatch):
    from backbone_regularizer.components.regularizer import workflow

    def broken(model, report, fingerprint=True):
        raise VerificationError("weights_unchanged", "simulated")

    monkeypatch.setattr(workflow, "verify", broken)
    with pytest.raises(VerificationError):
        run_executor(tmp_path, zoo.shared_layer(), RegularizationSpec(l2=1e-4))
    assert not os.path.exists(tmp_path / "output")


def test_executor_missing_backbone_file(tmp_path):
    backbone = standard_artifacts.Model()
    backbone.uri = str(tmp_path / "empty")
    output = standard_artifacts.Model()
    output.uri = str(tmp_path / "output")
    with pytest.raises(FileNotFoundError, match="Format-Serving"):
        Executor().Do(
            {cs.BACKBONE_KEY: [backbone]},
            {cs.MODEL_KEY: [output]},
            {cs.SPEC_KEY: SPEC.to_json(), cs.SAFE_MODE_KEY: 1},
        )


@pytest.mark.e2e
def test_local_dag_runner_importer_then_regularizer(tmp_path):
    source = tmp_path / "source" / "Format-Serving"
    source.mkdir(parents=True)
    zoo.nested_backbone_with_head().save(source / cs.MODEL_FILE)
    importer = tfx.dsl.Importer(
        source_uri=str(tmp_path / "source"), artifact_type=tfx.types.standard_artifacts.Model
    ).with_id("backbone_importer")
    regularizer = BackboneRegularizer(backbone=importer.outputs["result"], spec=SPEC)
    metadata_path = str(tmp_path / "metadata.sqlite")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="regularizer-e2e",
        pipeline_root=str(tmp_path / "root"),
        components=[importer, regularizer],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path
        ),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)

    from ml_metadata.metadata_store import metadata_store

    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
    )
    models = store.get_artifacts_by_type(standard_artifacts.Model.TYPE_NAME)
    published = [m for m in models if "validation_passed" in m.custom_properties]
    assert len(published) == 1
    props = published[0].custom_properties
    assert props[cs.PROP_VALIDATION_PASSED].int_value == 1
    assert props[cs.PROP_REGULARIZED].int_value == 52
    assert props[cs.PROP_REGULARIZER].string_value == "L2(l2=0.0001)"
    assert len(props[cs.PROP_WEIGHTS_SHA256].string_value) == 64
    assert os.path.exists(os.path.join(published[0].uri, "Format-Serving", cs.MODEL_FILE))

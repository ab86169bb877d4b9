"""BackboneLoader: construction, executor Do() on tiny backbones, and a LocalDagRunner run."""

import json
import os

import keras
import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.types import standard_artifacts

from backbone_regularizer.components.backbone_loader import BackboneLoader
from backbone_regularizer.components.backbone_loader import component_spec as cs
from backbone_regularizer.components.backbone_loader.executor import Executor
from backbone_regularizer.components.model_artifact import MODEL_FILE
from backbone_regularizer.components.regularizer import BackboneRegularizer, RegularizationSpec
from backbone_regularizer.components.regularizer import component_spec as regularizer_cs
from backbone_regularizer.components.regularizer.keras_file import weights_sha256
from tests.backbone_loader.helpers import KWARGS, SHAPE, mobilenet, recording_constructor


def test_construction_declares_output_and_exec_properties():
    loader = BackboneLoader(
        "MobileNetV2", input_shape=SHAPE, weights=None, pooling="avg", kwargs=KWARGS
    )
    assert loader.outputs[cs.BACKBONE_KEY].type == standard_artifacts.Model
    assert loader.inputs == {}
    assert loader.exec_properties == {
        cs.ARCHITECTURE_KEY: "MobileNetV2",
        cs.WEIGHTS_KEY: "none",
        cs.INPUT_SHAPE_KEY: "[32, 32, 3]",
        cs.POOLING_KEY: "avg",
        cs.KWARGS_KEY: '{"alpha": 0.35}',
    }
    # Strings only: bool and proto exec properties crash the KFP v2 entrypoint.
    assert all(isinstance(v, str) for v in loader.exec_properties.values())


def test_construction_defaults_and_json_arguments():
    loader = BackboneLoader("ResNet50", input_shape="[null, null, 3]", kwargs='{"name": "rn"}')
    assert loader.exec_properties[cs.WEIGHTS_KEY] == "imagenet"
    assert loader.exec_properties[cs.POOLING_KEY] == "none"
    assert loader.exec_properties[cs.INPUT_SHAPE_KEY] == "[null, null, 3]"
    assert json.loads(loader.exec_properties[cs.KWARGS_KEY]) == {"name": "rn"}
    weights_uri = "gs://bucket/backbones/resnet50.weights.h5"
    with_file = BackboneLoader("ResNet50", input_shape=(64, 64, 3), weights=weights_uri)
    assert with_file.exec_properties[cs.WEIGHTS_KEY] == weights_uri


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"architecture": "MobilenetV2"}, r"Unknown architecture.*Did you mean 'MobileNetV2'"),
        ({"architecture": None}, r"Expected a keras.applications class name"),
        ({"input_shape": [32, 32]}, r"Invalid value for argument `input_shape`"),
        ({"input_shape": "32,32,3"}, r"Invalid value for argument `input_shape`"),
        ({"input_shape": [32, -32, 3]}, r"Invalid value for argument `input_shape`"),
        ({"pooling": "mean"}, r"Expected one of \[None, 'avg', 'max'\]"),
        ({"weights": "imagenet21k"}, r"Expected 'imagenet', 'none' .*weights='imagenet21k'"),
        ({"weights": "gs://bucket/model.pt"}, r"ending in .weights.h5"),
        ({"kwargs": {"alpah": 0.35}}, r"Did you mean 'alpha'"),
        ({"kwargs": {"pooling": "avg"}}, r"use the `pooling` argument"),
        ({"kwargs": "alpha=0.35"}, r"Expected a JSON object"),
    ],
)
def test_construction_errors_at_build_time(kwargs, message):
    arguments = {"architecture": "MobileNetV2", "input_shape": SHAPE, "weights": "none"}
    with pytest.raises(ValueError, match=message):
        BackboneLoader(**{**arguments, **kwargs})


def run_executor(tmp_path, weights="none", input_shape="[32, 32, 3]", pooling="none"):
    output = standard_artifacts.Model()
    output.uri = str(tmp_path / "output")
    Executor().Do(
        {},
        {cs.BACKBONE_KEY: [output]},
        {
            cs.ARCHITECTURE_KEY: "MobileNetV2",
            cs.WEIGHTS_KEY: weights,
            cs.INPUT_SHAPE_KEY: input_shape,
            cs.POOLING_KEY: pooling,
            cs.KWARGS_KEY: json.dumps(KWARGS),
        },
    )
    return output


def published_model(output) -> keras.Model:
    path = os.path.join(output.uri, "Format-Serving", MODEL_FILE)
    assert os.path.isfile(path)
    return keras.saving.load_model(path, compile=False)


def test_executor_writes_model_and_properties(tmp_path):
    output = run_executor(tmp_path, pooling="avg")
    model = published_model(output)
    assert tuple(model.output.shape) == (None, 1280)
    assert output.get_string_custom_property(cs.PROP_SOURCE) == (
        "keras.applications.MobileNetV2(weights=None)"
    )
    assert output.get_string_custom_property(cs.PROP_WEIGHTS_SHA256) == weights_sha256(model)
    assert output.get_int_custom_property(cs.PROP_PARAMETER_COUNT) == model.count_params()
    assert output.get_int_custom_property(cs.PROP_PARAMETER_COUNT) == mobilenet().count_params()
    assert output.get_string_custom_property(cs.PROP_ARCHITECTURE) == "MobileNetV2"
    assert output.get_string_custom_property(cs.PROP_INPUT_SHAPE) == "[32, 32, 3]"
    assert output.get_string_custom_property(cs.PROP_KERAS_VERSION) == keras.__version__
    assert sorted(os.listdir(output.uri)) == ["Format-Serving", "provenance.json"]  # record last


def test_executor_loads_weights_file_uri(tmp_path):
    source = mobilenet()
    uri = str(tmp_path / "bucket" / "backbone.weights.h5")
    os.makedirs(os.path.dirname(uri))
    source.save_weights(uri)
    output = run_executor(tmp_path, weights=uri)
    model = published_model(output)
    assert weights_sha256(model) == weights_sha256(source)
    assert output.get_string_custom_property(cs.PROP_WEIGHTS_SHA256) == weights_sha256(source)
    assert output.get_string_custom_property(cs.PROP_SOURCE) == uri


def test_executor_imagenet_makes_the_keras_call(tmp_path, monkeypatch):
    # No internet here: the real download cannot run, so record the call instead.
    calls = []
    monkeypatch.setattr(keras.applications, "MobileNetV2", recording_constructor(calls))
    output = run_executor(tmp_path, weights="imagenet")
    assert [call["weights"] for call in calls] == ["imagenet"]
    assert calls[0]["include_top"] is False
    assert output.get_string_custom_property(cs.PROP_SOURCE) == (
        "keras.applications.MobileNetV2(weights=imagenet)"
    )
    assert len(output.get_string_custom_property(cs.PROP_WEIGHTS_SHA256)) == 64


def test_executor_missing_weights_file_publishes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.weights\.h5' \(missing\)"):
        run_executor(tmp_path, weights=str(tmp_path / "absent.weights.h5"))
    assert not os.path.exists(tmp_path / "output")


def test_executor_mismatched_weights_file_names_the_uri(tmp_path):
    uri = str(tmp_path / "alpha050.weights.h5")
    mobilenet(alpha=0.5).save_weights(uri)
    with pytest.raises(ValueError, match=rf"Received: weights='{uri}': \d+ objects could not"):
        run_executor(tmp_path, weights=uri)
    assert not os.path.exists(tmp_path / "output")


def test_executor_too_small_input_publishes_nothing(tmp_path):
    with pytest.raises(ValueError, match="at least 32x32"):
        run_executor(tmp_path, input_shape="[16, 16, 3]")
    assert not os.path.exists(tmp_path / "output")


@pytest.mark.e2e
def test_local_dag_runner_loader_then_regularizer(tmp_path):
    source = mobilenet()
    weights_uri = str(tmp_path / "weights" / "mobilenet.weights.h5")
    os.makedirs(os.path.dirname(weights_uri))
    source.save_weights(weights_uri)
    loader = BackboneLoader("MobileNetV2", input_shape=SHAPE, weights=weights_uri, kwargs=KWARGS)
    regularizer = BackboneRegularizer(
        backbone=loader.outputs[cs.BACKBONE_KEY], spec=RegularizationSpec(l2=1e-4)
    )
    metadata_path = str(tmp_path / "metadata.sqlite")
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="backbone-loader-e2e",
        pipeline_root=str(tmp_path / "root"),
        components=[loader, regularizer],
        metadata_connection_config=connection,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)

    store = metadata_store.MetadataStore(connection)
    models = store.get_artifacts_by_type(standard_artifacts.Model.TYPE_NAME)
    loaded = [m for m in models if cs.PROP_SOURCE in m.custom_properties]
    regularized = [
        m for m in models if regularizer_cs.PROP_VALIDATION_PASSED in m.custom_properties
    ]
    assert len(loaded) == 1 and len(regularized) == 1
    props = loaded[0].custom_properties
    assert props[cs.PROP_SOURCE].string_value == weights_uri
    assert props[cs.PROP_ARCHITECTURE].string_value == "MobileNetV2"
    assert props[cs.PROP_INPUT_SHAPE].string_value == "[32, 32, 3]"
    assert props[cs.PROP_PARAMETER_COUNT].int_value == source.count_params()
    assert props[cs.PROP_KERAS_VERSION].string_value == keras.__version__
    assert props[cs.PROP_WEIGHTS_SHA256].string_value == weights_sha256(source)
    assert os.path.isfile(os.path.join(loaded[0].uri, "Format-Serving", MODEL_FILE))

    regularized_props = regularized[0].custom_properties
    assert regularized_props[regularizer_cs.PROP_VALIDATION_PASSED].int_value == 1
    assert regularized_props[regularizer_cs.PROP_REGULARIZED].int_value > 0
    # Same weights, restored by the regularizer from the loader's file.
    assert (
        regularized_props[regularizer_cs.PROP_WEIGHTS_SHA256].string_value
        == props[cs.PROP_WEIGHTS_SHA256].string_value
    )
    # The regularizer consumed the loader's artifact (lineage, not just equal checksums).
    event_types = {e.type for e in store.get_events_by_artifact_ids([loaded[0].id])}
    assert event_types == {metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.INPUT}

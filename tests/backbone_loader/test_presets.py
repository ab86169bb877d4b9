"""BackboneLoader with KerasHub presets: construction, executor Do() on preset directories
written by ``save_to_preset`` (local and through a URI), the offline error for a built-in name,
and a LocalDagRunner run into BackboneRegularizer (marked e2e)."""

import json
import os

import keras
import numpy as np
import pytest
from tfx import v1 as tfx
from tfx.types import standard_artifacts

from backbone_regularizer.components.backbone_loader import BackboneLoader, presets
from backbone_regularizer.components.backbone_loader import component_spec as cs
from backbone_regularizer.components.backbone_loader.executor import Executor
from backbone_regularizer.components.model_artifact import MODEL_FILE
from backbone_regularizer.components.regularizer import BackboneRegularizer, RegularizationSpec
from backbone_regularizer.components.regularizer import component_spec as regularizer_cs
from backbone_regularizer.components.regularizer.keras_file import weights_sha256
from tests import zoo

# Kernels of zoo.hub_resnet(), counted in tests/regularizer/test_kerashub.py.
RESNET_KERNELS = 6


@pytest.fixture(scope="module")
def resnet_preset(tmp_path_factory):
    """A preset directory of a tiny ResNet (32x32 images), and the source model."""
    model = zoo.hub_resnet()
    path = tmp_path_factory.mktemp("presets") / "tiny_resnet"
    model.save_to_preset(str(path))
    return str(path), model


def test_construction_declares_preset_exec_properties(resnet_preset):
    path, _ = resnet_preset
    loader = BackboneLoader(preset=path)
    assert loader.outputs[cs.BACKBONE_KEY].type == standard_artifacts.Model
    assert loader.exec_properties == {cs.PRESET_KEY: path, cs.WEIGHTS_KEY: "preset"}
    loader = BackboneLoader(preset="resnet_18_imagenet", weights="none", input_shape=[64, 64, 3])
    assert loader.exec_properties == {
        cs.PRESET_KEY: "resnet_18_imagenet",
        cs.WEIGHTS_KEY: "none",
        cs.INPUT_SHAPE_KEY: "[64, 64, 3]",
    }
    assert all(isinstance(v, str) for v in loader.exec_properties.values())
    assert BackboneLoader(preset="gs://bucket/presets/r18").exec_properties[cs.PRESET_KEY] == (
        "gs://bucket/presets/r18"
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"preset": "resnet18_imagenet"}, r"Unknown KerasHub preset. Did you mean 'resnet_18_"),
        ({"preset": ""}, r"Expected a KerasHub preset"),
        ({"preset": "x/y", "architecture": "MobileNetV2"}, r"not both"),
        ({"preset": "x/y", "weights": "imagenet"}, r"Expected 'preset' .* or 'none'"),
        ({"preset": "x/y", "pooling": "avg"}, r"the Trainer's head pools"),
        ({"preset": "x/y", "kwargs": {"alpha": 1.0}}, r"the preset defines the architecture"),
        ({"preset": "x/y", "input_shape": [32, 32]}, r"Invalid value for argument `input_shape`"),
        ({"architecture": "MobileNetV2"}, r"Expected \(height, width, channels\)"),
    ],
)
def test_construction_errors_at_build_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BackboneLoader(**kwargs)


def run_executor(tmp_path, preset, weights="preset", input_shape=None):
    output = standard_artifacts.Model()
    output.uri = str(tmp_path / "output")
    properties = {cs.PRESET_KEY: preset, cs.WEIGHTS_KEY: weights}
    if input_shape:
        properties[cs.INPUT_SHAPE_KEY] = json.dumps(input_shape)
    Executor().Do({}, {cs.BACKBONE_KEY: [output]}, properties)
    return output


def published(output) -> keras.Model:
    return keras.saving.load_model(
        os.path.join(output.uri, "Format-Serving", MODEL_FILE), compile=False
    )


def test_executor_loads_preset_directory_with_provenance(tmp_path, resnet_preset):
    path, source = resnet_preset
    output = run_executor(tmp_path, path, input_shape=[48, 48, 3])  # overrides image_shape
    model = published(output)
    assert type(model).__name__ == "ResNetBackbone"
    assert tuple(model.input_shape) == (None, 48, 48, 3)
    assert weights_sha256(model) == weights_sha256(source)  # the preset's weights, unchanged
    props = {
        name: output.get_string_custom_property(name)
        for name in (
            cs.PROP_SOURCE,
            cs.PROP_WEIGHTS_SHA256,
            cs.PROP_ARCHITECTURE,
            cs.PROP_INPUT_SHAPE,
            cs.PROP_PRESET,
            cs.PROP_KERAS_VERSION,
            cs.PROP_KERAS_HUB_VERSION,
        )
    }
    assert props == {
        cs.PROP_SOURCE: f"keras_hub.models.Backbone.from_preset({path!r})",
        cs.PROP_WEIGHTS_SHA256: weights_sha256(source),
        cs.PROP_ARCHITECTURE: "ResNetBackbone",
        cs.PROP_INPUT_SHAPE: "[48, 48, 3]",
        cs.PROP_PRESET: path,
        cs.PROP_KERAS_VERSION: keras.__version__,
        cs.PROP_KERAS_HUB_VERSION: "0.25.1",
    }
    assert output.get_int_custom_property(cs.PROP_PARAMETER_COUNT) == source.count_params()


def test_executor_preset_through_uri_and_random_weights(tmp_path, resnet_preset):
    path, source = resnet_preset
    # file:// goes through the same fileio copy as gs:// and s3:// preset directories.
    output = run_executor(tmp_path, f"file://{path}", weights="none")
    model = published(output)
    assert model.count_params() == source.count_params()
    assert weights_sha256(model) != weights_sha256(source)
    assert tuple(model.input_shape) == (None, 32, 32, 3)
    assert output.get_string_custom_property(cs.PROP_SOURCE) == (
        f"keras_hub.models.Backbone.from_preset('file://{path}', load_weights=False)"
    )
    assert output.get_string_custom_property(cs.PROP_INPUT_SHAPE) == "[32, 32, 3]"


def test_executor_text_preset_records_its_inputs(tmp_path):
    path = tmp_path / "tiny_bert"
    source = zoo.hub_bert()
    source.save_to_preset(str(path))
    output = run_executor(tmp_path, str(path))
    assert weights_sha256(published(output)) == weights_sha256(source)
    assert json.loads(output.get_string_custom_property(cs.PROP_INPUT_SHAPE)) == {
        "padding_mask": [None],
        "segment_ids": [None],
        "token_ids": [None],
    }
    with pytest.raises(ValueError, match=r"does not take an image shape"):
        run_executor(tmp_path / "again", str(path), input_shape=[32, 32, 3])


def test_executor_errors_name_the_preset(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such directory"):
        run_executor(tmp_path, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"Received: preset='file://.*/missing' \(missing"):
        run_executor(tmp_path, f"file://{tmp_path}/missing")
    not_a_preset = tmp_path / "not_a_preset"
    not_a_preset.mkdir()
    (not_a_preset / "model.keras").write_text("x")
    with pytest.raises(ValueError, match=r"holding config.json .*\['model.keras'\]"):
        run_executor(tmp_path, str(not_a_preset))
    assert not (tmp_path / "output").exists()


def test_builtin_preset_name_without_network_is_a_clear_error(tmp_path, monkeypatch):
    """The real download path of a built-in name. This machine has no route to Kaggle; the
    endpoint is also pointed at a closed local port so the test cannot download anywhere."""
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")  # http://localhost:7777
    with pytest.raises(OSError) as err:
        run_executor(tmp_path, "resnet_18_imagenet")
    message = str(err.value)
    assert message.startswith("Could not download KerasHub preset 'resnet_18_imagenet' (")
    assert "Expected network access to Kaggle Models or Hugging Face" in message
    assert "`backbone.save_to_preset(dir)` (local, gs:// or s3://)" in message
    assert message.endswith("Received: preset='resnet_18_imagenet'")
    assert not (tmp_path / "output").exists()


def test_describe_builtin_preset_records_versioned_handle():
    source = presets.describe_preset("resnet_18_imagenet", "preset")
    assert source.startswith("keras_hub.models.Backbone.from_preset('resnet_18_imagenet') [")
    assert source.endswith("/resnet_18_imagenet/" + source.rsplit("/", 1)[1])
    assert "kaggle://keras/" in source


@pytest.mark.e2e
def test_local_dag_runner_preset_then_regularizer(tmp_path, resnet_preset):
    path, source = resnet_preset
    loader = BackboneLoader(preset=path)
    regularizer = BackboneRegularizer(
        backbone=loader.outputs["backbone"], spec=RegularizationSpec(l2=1e-4)
    )
    metadata = str(tmp_path / "metadata.sqlite")
    tfx.orchestration.LocalDagRunner().run(
        tfx.dsl.Pipeline(
            pipeline_name="preset-loader",
            pipeline_root=str(tmp_path / "root"),
            components=[loader, regularizer],
            metadata_connection_config=(
                tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata)
            ),
        )
    )
    from backbone_regularizer.pipeline.lineage.queries import connect, custom_properties, latest_run

    nodes = latest_run(connect(metadata), "preset-loader")
    loaded = custom_properties(nodes["BackboneLoader"].outputs["backbone"][0])
    regularized = custom_properties(
        nodes["BackboneRegularizer"].outputs[regularizer_cs.MODEL_KEY][0]
    )
    assert loaded["architecture"] == "ResNetBackbone"
    assert loaded["weights_sha256"] == weights_sha256(source)
    assert regularized[regularizer_cs.PROP_VALIDATION_PASSED] == 1
    assert regularized[regularizer_cs.PROP_REGULARIZED] == RESNET_KERNELS
    assert regularized[regularizer_cs.PROP_WEIGHTS_SHA256] == loaded["weights_sha256"]
    uri = nodes["BackboneRegularizer"].outputs[regularizer_cs.MODEL_KEY][0].uri
    reloaded = keras.saving.load_model(
        os.path.join(uri, "Format-Serving", regularizer_cs.MODEL_FILE), compile=False
    )
    report = json.loads(open(os.path.join(uri, regularizer_cs.REPORT_FILE)).read())
    assert len(reloaded.losses) == RESNET_KERNELS  # penalties live in a plain load_model
    assert np.isclose(
        float(sum(float(x) for x in reloaded.losses)),
        report["penalty"]["total_in_loss"],
        rtol=1e-6,
    )

"""PipelineConfig with a KerasHub preset backbone and custom_modules: validated when loaded or
when the pipeline is built, wired into BackboneLoader, BackboneRegularizer, the Trainer and
the Kubeflow compile."""

import json
import os

import pytest

from backbone_regularizer.components.backbone_loader import component_spec as loader_cs
from backbone_regularizer.components.regularizer import component_spec as regularizer_cs
from backbone_regularizer.pipeline.config import BackboneConfig, PipelineConfig
from backbone_regularizer.pipeline.create_pipeline import create_pipeline
from backbone_regularizer.pipeline.kubeflow.compile import compile_pipeline
from tests.kubeflow.configs import IMAGE, ROOT, cluster_config

HUB_TRAINER = {"num_classes": 5, "architecture": "ResNetBackbone", "preprocessing": "imagenet"}


def nodes(config: PipelineConfig) -> dict:
    return {c.id: c for c in create_pipeline(config).components}


def test_preset_backbone_builds_a_loader_with_preset_properties(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = PipelineConfig.from_dict(
        {"backbone": {"keras_hub_preset": "./presets/tiny"}, "trainer": HUB_TRAINER}
    )
    assert config.backbone.weights == "preset" and config.backbone.input_shape is None
    loader = nodes(config)["BackboneLoader"]
    assert loader.exec_properties == {
        loader_cs.PRESET_KEY: os.path.join(str(tmp_path), "presets/tiny"),
        loader_cs.WEIGHTS_KEY: "preset",
    }
    named = PipelineConfig(
        backbone=BackboneConfig(
            keras_hub_preset="resnet_18_imagenet", weights="none", input_shape=[64, 64, 3]
        ),
        trainer=HUB_TRAINER,
    )
    assert nodes(named)["BackboneLoader"].exec_properties == {
        loader_cs.PRESET_KEY: "resnet_18_imagenet",
        loader_cs.WEIGHTS_KEY: "none",
        loader_cs.INPUT_SHAPE_KEY: "[64, 64, 3]",
    }
    assert PipelineConfig.from_dict(named.to_dict()) == named


def test_an_architecture_backbone_has_no_preset_properties():
    config = PipelineConfig(backbone=BackboneConfig())
    backbone = config.backbone
    assert backbone.input_shape == (32, 32, 3) and backbone.keras_hub_preset is None
    assert backbone.weights == "none"
    loader = nodes(config)["BackboneLoader"]
    assert loader_cs.PRESET_KEY not in loader.exec_properties
    assert loader.exec_properties[loader_cs.INPUT_SHAPE_KEY] == "[32, 32, 3]"


@pytest.mark.parametrize(
    "backbone, message",
    [
        ({"keras_hub_preset": "x/y", "keras_file": "m"}, r"null when `backbone.keras_file`"),
        ({"keras_hub_preset": "x/y", "weights": "imagenet"}, r"'preset' or 'none' with"),
        ({"keras_hub_preset": 3}, r"Invalid config `backbone.keras_hub_preset`"),
        ({"keras_hub_preset": "x/y", "input_shape": [32, 32]}, r"backbone.input_shape"),
    ],
)
def test_invalid_preset_configs(backbone, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig.from_dict({"backbone": backbone, "trainer": HUB_TRAINER})


def test_unknown_builtin_preset_fails_when_the_pipeline_is_built():
    config = PipelineConfig(
        backbone=BackboneConfig(keras_hub_preset="resnet_18_imagenett"), trainer=HUB_TRAINER
    )
    with pytest.raises(ValueError, match=r"Did you mean 'resnet_18_imagenet'"):
        create_pipeline(config)


def test_custom_modules_reach_the_regularizer_and_the_trainer():
    config = PipelineConfig.from_dict(
        {
            "custom_modules": ["my_project.layers"],
            "trainer": {**HUB_TRAINER, "custom_modules": ["my_project.heads"]},
        }
    )
    built = nodes(config)
    regularizer = built["BackboneRegularizer"].exec_properties
    assert json.loads(regularizer[regularizer_cs.CUSTOM_MODULES_KEY]) == ["my_project.layers"]
    trainer_config = json.loads(built["Trainer"].exec_properties["custom_config"])
    assert trainer_config["custom_modules"] == ["my_project.layers", "my_project.heads"]
    assert regularizer_cs.CUSTOM_MODULES_KEY not in (
        nodes(PipelineConfig())["BackboneRegularizer"].exec_properties
    )
    with pytest.raises(ValueError, match=r"Received: custom_modules="):
        PipelineConfig.from_dict({"custom_modules": ["not a module"]})


def test_kubeflow_compile_with_a_preset(tmp_path):
    bucket_preset = "gs://my-bucket/presets/resnet_18"
    config = cluster_config(
        backbone=BackboneConfig(keras_hub_preset=bucket_preset),
        trainer={**HUB_TRAINER, "num_classes": 2},
        custom_modules=["my_project.layers"],
    )
    job = compile_pipeline(config, tmp_path / "p.json", IMAGE, ROOT)
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    loader = tasks["BackboneLoader"]["inputs"]["parameters"]
    assert {k: v["runtimeValue"]["constant"] for k, v in loader.items()} == {
        "preset": bucket_preset,
        "weights": "preset",
    }
    regularizer = tasks["BackboneRegularizer"]["inputs"]["parameters"]
    assert regularizer["custom_modules"]["runtimeValue"]["constant"] == '["my_project.layers"]'
    named = cluster_config(
        backbone=BackboneConfig(keras_hub_preset="resnet_18_imagenet"), trainer=HUB_TRAINER
    )
    compile_pipeline(named, tmp_path / "named.json", IMAGE, ROOT)  # a name needs no URI
    local = cluster_config(backbone=BackboneConfig(keras_hub_preset="/presets/r18"))
    with pytest.raises(ValueError, match=r"`config.backbone.keras_hub_preset` on Kubeflow"):
        compile_pipeline(local, tmp_path / "local.json", IMAGE, ROOT)

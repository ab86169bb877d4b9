"""A KerasHub image backbone through the whole local pipeline (marked e2e): a preset directory
written by ``save_to_preset`` -> BackboneLoader -> BackboneRegularizer -> Trainer (head
chosen from the backbone's 4-D output, explicit ImageNet preprocessing) -> Evaluator ->
Pusher, on the reduced e2e config."""

import dataclasses
import os

import keras
import numpy as np
import pytest

from backbone_regularizer.components.regularizer import component_spec as reg
from backbone_regularizer.components.regularizer.keras_file import weights_sha256
from backbone_regularizer.pipeline.config import BackboneConfig
from backbone_regularizer.pipeline.demo.data import write_target_span
from backbone_regularizer.pipeline.lineage.queries import connect, custom_properties, latest_run
from backbone_regularizer.pipeline.lineage.summary import collect
from backbone_regularizer.pipeline.local_runner import run_local
from tests import zoo
from tests.pipeline.test_pipeline_e2e import NODES, reduced_config

# zoo.hub_resnet(): 6 convolution kernels, each followed by a BatchNormalization layer
# (counted in tests/regularizer/test_kerashub.py).
KERNELS = 6
BATCHNORM_STATISTICS = 2 * 6  # moving mean and variance


@pytest.mark.e2e
def test_kerashub_resnet_preset_through_the_whole_pipeline(tmp_path):
    preset = tmp_path / "presets" / "tiny_resnet"
    source = zoo.hub_resnet()
    source.save_to_preset(str(preset))
    config = dataclasses.replace(
        reduced_config(tmp_path),
        pipeline_name="e2e-kerashub",
        backbone=BackboneConfig(keras_hub_preset=str(preset)),
        trainer={
            "num_classes": 5,
            "architecture": "ResNetBackbone",
            "image_size": [32, 32],
            "preprocessing": "imagenet",
            "epochs": 2,
            "batch_size": 16,
            "augment": False,
        },
    )
    write_target_span(tmp_path / "images", 1, per_class=12)

    run_local(config)
    nodes = latest_run(connect(config.metadata_path), config.pipeline_name)
    assert {n: r.state for n, r in nodes.items()} == dict.fromkeys(NODES, "COMPLETE")

    loader = custom_properties(nodes["BackboneLoader"].outputs["backbone"][0])
    assert loader["architecture"] == "ResNetBackbone"
    assert loader["source"] == f"keras_hub.models.Backbone.from_preset({str(preset)!r})"
    assert loader["weights_sha256"] == weights_sha256(source)
    regularized = custom_properties(nodes["BackboneRegularizer"].outputs[reg.MODEL_KEY][0])
    assert regularized[reg.PROP_VALIDATION_PASSED] == 1
    assert regularized[reg.PROP_REGULARIZED] == KERNELS
    assert regularized[reg.PROP_WEIGHTS_SHA256] == loader["weights_sha256"]

    summary = collect(config)
    training = summary["training"]
    assert training["penalty_terms_in_loss"] == KERNELS  # live in the model the Trainer built
    assert training["batchnorm_statistics_unchanged"] == BATCHNORM_STATISTICS
    assert training["config"]["preprocessing"] == "imagenet"
    assert custom_properties(nodes["Evaluator"].outputs["blessing"][0])["blessed"] == 1
    pushed_dir = custom_properties(nodes["Pusher"].outputs["pushed_model"][0])["pushed_destination"]
    assert os.path.exists(os.path.join(pushed_dir, "saved_model.pb"))
    classifier = keras.saving.load_model(
        os.path.join(pushed_dir, "model.keras"), safe_mode=True, compile=False
    )
    assert type(classifier.get_layer("head_pool")).__name__ == "GlobalAveragePooling2D"
    probabilities = classifier(np.zeros((1, 32, 32, 3), "float32")).numpy()
    assert probabilities.shape == (1, 5) and np.isclose(probabilities.sum(), 1.0, atol=1e-5)

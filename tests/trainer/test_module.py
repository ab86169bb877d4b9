"""Trainer module: base-model checks, fine-tuning on CPU (mixed precision, mirrored), export."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from backbone_regularizer.components.regularizer import RegularizationSpec
from backbone_regularizer.components.regularizer.component_spec import MODEL_FILE
from backbone_regularizer.pipeline.trainer import module as trainer_module
from backbone_regularizer.pipeline.trainer.base_model import (
    BaseModelRejected,
    load_regularized_base,
)
from backbone_regularizer.pipeline.trainer.config import TrainerConfig
from backbone_regularizer.pipeline.trainer.export import export_serving_model
from tests.trainer.artifacts import regularized_artifact
from tests.trainer.tfrecords import example, write_split


@pytest.fixture
def base_artifact(tmp_path):
    """A BackboneRegularizer-shaped output: <uri>/Format-Serving/model.keras + report."""
    return regularized_artifact(tmp_path, RegularizationSpec(l2=1e-3))


def test_base_model_loads_when_it_is_the_verified_one(base_artifact):
    model, report = load_regularized_base(str(base_artifact / "Format-Serving"))
    assert len(model.losses) == report["counts"]["regularized_trainable"] == 52


def test_base_model_with_stripped_penalties_is_rejected(base_artifact):
    path = base_artifact / "Format-Serving" / MODEL_FILE
    model = keras.saving.load_model(path)
    for layer in model._flatten_layers():
        for attribute in ("kernel_regularizer", "depthwise_regularizer"):
            if hasattr(layer, attribute):
                setattr(layer, attribute, None)
    model.save(path)
    with pytest.raises(BaseModelRejected, match="regularizers were stripped"):
        load_regularized_base(str(base_artifact / "Format-Serving"))


def test_base_model_with_tampered_weights_is_rejected(base_artifact):
    path = base_artifact / "Format-Serving" / MODEL_FILE
    model = keras.saving.load_model(path)
    kernel = model.get_layer("Conv1").kernel
    kernel.assign(kernel.value + 1e-3)
    model.save(path)
    with pytest.raises(BaseModelRejected, match="weights changed after validation"):
        load_regularized_base(str(base_artifact / "Format-Serving"))


def test_base_model_without_report_is_rejected(tmp_path):
    (tmp_path / "m" / "Format-Serving").mkdir(parents=True)
    with pytest.raises(BaseModelRejected, match="no report"):
        load_regularized_base(str(tmp_path / "m" / "Format-Serving"))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"architecture": "Nope"}, "architecture"),
        ({"mixed_precision": "yes"}, "mixed_precision"),
        ({"image_size": [32]}, "image_size"),
        ({"epochs": "10"}, "epochs"),
    ],
)
def test_trainer_config_errors(changes, message):
    with pytest.raises(ValueError, match=f"Invalid trainer setting `{message}`"):
        TrainerConfig(**{"num_classes": 2, **changes})


def test_trainer_config_unknown_key():
    with pytest.raises(ValueError, match="Unknown trainer settings: \\['lr'\\]"):
        TrainerConfig.from_dict({"num_classes": 2, "lr": 1})


@pytest.mark.parametrize(
    "precision, distribution",
    [("off", "none"), ("on", "mirrored")],  # the GPU code paths, exercised on CPU
)
def test_train_exercises_device_paths_and_keeps_batchnorm_fixed(
    base_artifact, tmp_path, precision, distribution
):
    config = TrainerConfig(
        num_classes=2,
        epochs=2,
        warmup_epochs=1,
        unfreeze_from="block_15_expand",
        batch_size=8,
        mixed_precision=precision,
        distribution=distribution,
        weight_decay=1e-4,
    )
    strategy, mixed = trainer_module.resolve_devices(config)
    assert mixed is (precision == "on")
    with strategy.scope():
        base, report = load_regularized_base(str(base_artifact / "Format-Serving"))
    policy_before = keras.config.dtype_policy().name
    classifier, summary = trainer_module.train(
        base,
        report,
        config,
        write_split(tmp_path / "train", 8),
        write_split(tmp_path / "eval", 4),
        str(tmp_path / "run"),
        strategy,
        mixed,
    )
    assert keras.config.dtype_policy().name == policy_before  # no leaked global policy
    assert summary["epochs_run"] == 3  # 1 warm-up + 2 fine-tuning
    assert summary["strategy"] == (
        "MirroredStrategy" if distribution == "mirrored" else "_DefaultDistributionStrategy"
    )
    assert summary["mixed_precision"] is mixed
    assert summary["batchnorm_statistics_unchanged"] == 104
    assert summary["warnings"] and "weight_decay" in summary["warnings"][0]
    # Only layers from block_15_expand on were fine-tuned; their penalties reach the loss.
    assert not base.get_layer("block_14_project").trainable
    assert base.get_layer("block_16_project").trainable
    assert summary["penalty_terms_in_loss"] == len(classifier.losses) > 0
    if mixed:
        assert base.get_layer("Conv1").compute_dtype == "float16"
        assert base.get_layer("Conv1").kernel.dtype == "float32"
    assert os.path.isdir(tmp_path / "run" / "logs")
    # Baselines fitted on this very split (brightness separates the two classes).
    pixels = summary["baselines"]["pixels_logistic_regression"]
    probe = summary["baselines"]["linear_probe"]
    assert pixels["train_examples"] == probe["train_examples"] == 16
    assert pixels["eval_examples"] == probe["eval_examples"] == 8
    assert pixels["eval_accuracy"] == 1.0 and pixels["features"] == 32 * 32 * 3
    assert probe["features"] == 1280  # MobileNetV2's pooled output


def test_export_serves_serialized_examples(tmp_path):
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    export_serving_model(model, str(tmp_path / "serving"), (32, 32), "mobilenet_v2")
    loaded = tf.saved_model.load(str(tmp_path / "serving"))
    outputs = loaded.signatures["serving_default"](
        examples=tf.constant([example(0, 0), example(1, 1)])
    )
    probabilities = outputs["probabilities"].numpy()
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert os.path.exists(tmp_path / "serving" / "model.keras")


def test_write_curves_png(tmp_path):
    history = {
        "loss": [1, 0.5],
        "val_loss": [1.1, 0.7],
        "accuracy": [0.5, 0.8],
        "val_accuracy": [0.4, 0.7],
    }
    path = tmp_path / "curves.png"
    trainer_module.write_curves(history, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000

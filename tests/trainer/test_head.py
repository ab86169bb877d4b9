"""The Trainer's head on 4-D feature maps, token sequences and dict outputs (real KerasHub
backbones where one exists), explicit preprocessing, and their TrainerConfig settings."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from backbone_regularizer.pipeline.trainer.config import TrainerConfig
from backbone_regularizer.pipeline.trainer.head import pooled_features, select_output
from backbone_regularizer.pipeline.trainer.module import build_classifier
from backbone_regularizer.pipeline.trainer.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_preprocessing,
    preprocess_fn,
)
from tests import zoo

RNG = np.random.default_rng(0)


def evaluate(inputs, outputs, data):
    return keras.Model(inputs, outputs)(data).numpy()


def test_feature_map_pools_over_height_and_width():
    inputs = keras.Input((4, 3, 8))
    data = RNG.normal(size=(2, 4, 3, 8)).astype("float32")
    average = pooled_features(inputs, "avg")
    np.testing.assert_allclose(evaluate(inputs, average, data), data.mean(axis=(1, 2)), 1e-6)
    maximum = pooled_features(inputs, "max")
    np.testing.assert_allclose(evaluate(inputs, maximum, data), data.max(axis=(1, 2)))
    with pytest.raises(ValueError, match=r"Expected 'avg' or 'max' for a backbone that outputs"):
        pooled_features(inputs, "class_token")


def test_token_sequence_mean_max_or_class_token():
    inputs = keras.Input((5, 8))
    data = RNG.normal(size=(2, 5, 8)).astype("float32")
    np.testing.assert_allclose(
        evaluate(inputs, pooled_features(inputs, "avg"), data), data.mean(axis=1), 1e-6
    )
    np.testing.assert_allclose(
        evaluate(inputs, pooled_features(inputs, "max"), data), data.max(axis=1)
    )
    np.testing.assert_array_equal(
        evaluate(inputs, pooled_features(inputs, "class_token"), data), data[:, 0]
    )
    variable = keras.Input((None, 8))  # any length: the first token is still well defined
    np.testing.assert_array_equal(
        evaluate(variable, pooled_features(variable, "class_token"), data), data[:, 0]
    )
    with pytest.raises(ValueError, match=r"Expected one of \['avg', 'max', 'class_token'\]"):
        pooled_features(inputs, "cls")


def test_vector_output_is_used_as_is():
    inputs = keras.Input((8,))
    assert pooled_features(inputs, "avg") is inputs


def test_dict_output_of_a_real_bert_picks_the_single_vector():
    bert = zoo.hub_bert()
    outputs = bert.output
    assert set(outputs) == {"sequence_output", "pooled_output"}
    assert select_output(outputs) is outputs["pooled_output"]  # the only rank-2 entry
    assert select_output(outputs, "sequence_output") is outputs["sequence_output"]
    features = pooled_features(outputs, "class_token", backbone_output="sequence_output")
    assert tuple(features.shape) == (None, 8)
    with pytest.raises(ValueError, match=r"Expected a key \(dict\) or index \(list\)"):
        select_output(outputs, "pooled")


def test_feature_pyramid_of_a_real_resnet_picks_the_deepest_level():
    resnet = zoo.hub_resnet()
    pyramid = keras.Model(resnet.inputs, resnet.pyramid_outputs)
    outputs = pyramid(keras.Input((32, 32, 3)))
    shapes = {key: tuple(value.shape) for key, value in outputs.items()}
    assert shapes == {"P2": (None, 8, 8, 64), "P3": (None, 4, 4, 16)}
    # Fewest positions wins over most channels: P3 is the deepest level.
    assert select_output(outputs) is outputs["P3"]
    assert tuple(pooled_features(outputs, "avg").shape) == (None, 16)
    assert tuple(pooled_features(list(outputs.values()), "avg", "0").shape) == (None, 64)


def test_ambiguous_outputs_ask_for_backbone_output():
    two_vectors = {"a": keras.Input((8,)), "b": keras.Input((4,))}
    with pytest.raises(ValueError, match=r"Set the trainer setting `backbone_output`"):
        select_output(two_vectors)
    same_size = [keras.Input((4, 4, 8)), keras.Input((4, 4, 8))]
    with pytest.raises(ValueError, match=r"Received: backbone_output=None"):
        select_output(same_size)
    assert select_output(same_size, 1) is same_size[1]
    with pytest.raises(ValueError, match=r"Expected null: the backbone has a single output"):
        select_output(keras.Input((8,)), "pooled_output")


def _config(**kwargs):
    base = dict(num_classes=3, architecture="KerasHub", preprocessing="symmetric", seed=1)
    return TrainerConfig(**{**base, **kwargs})


@pytest.mark.parametrize("pooling", ["avg", "class_token"])
def test_classifier_on_real_vit_saves_and_loads_in_safe_mode(tmp_path, pooling):
    vit = zoo.hub_vit()  # (batch, 1 class token + 4 patches, 8)
    assert tuple(vit.output.shape) == (None, 5, 8)
    classifier = build_classifier(vit, _config(image_size=[16, 16], pooling=pooling), False)
    kinds = {type(operation).__name__ for operation in classifier.operations}
    expected = "GetItem" if pooling == "class_token" else "GlobalAveragePooling1D"
    assert expected in kinds
    images = RNG.uniform(-1, 1, size=(2, 16, 16, 3)).astype("float32")
    path = tmp_path / "classifier.keras"
    classifier.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_array_equal(reloaded(images).numpy(), classifier(images).numpy())


def test_classifier_on_real_resnet_pools_the_feature_map():
    classifier = build_classifier(zoo.hub_resnet(), _config(image_size=[32, 32]), False)
    assert type(classifier.get_layer("head_pool")).__name__ == "GlobalAveragePooling2D"
    assert tuple(classifier.output.shape) == (None, 3)


def test_preprocessing_modes_and_explicit_scale_offset():
    pixels = tf.constant([[[[0.0, 127.5, 255.0]]]])
    imagenet = preprocess_fn(check_preprocessing("imagenet"))(pixels).numpy()[0, 0, 0]
    channels = zip([0, 127.5, 255], IMAGENET_MEAN, IMAGENET_STD, strict=True)
    expected = [(v / 255 - m) / s for v, m, s in channels]
    np.testing.assert_allclose(imagenet, expected, rtol=1e-6)
    np.testing.assert_allclose(preprocess_fn("mobilenet_v2")(pixels).numpy(), [[[[-1, 0, 1]]]])
    explicit = preprocess_fn({"scale": 1 / 255, "offset": 0.5})(pixels).numpy()
    np.testing.assert_allclose(explicit, [[[[0.5, 1.0, 1.5]]]], rtol=1e-6)
    per_channel = preprocess_fn({"scale": [1, 2, 0.5], "offset": [0, -1, 1]})(pixels).numpy()
    np.testing.assert_allclose(per_channel, [[[[0.0, 254.0, 128.5]]]])
    for bad in ("caffe", {"scale": 0, "offset": 0}, {"scale": [1, 2], "offset": 0}, {"s": 1}):
        with pytest.raises(ValueError, match=r"Invalid trainer setting `preprocessing`"):
            check_preprocessing(bad)


def test_trainer_config_head_and_preprocessing_settings():
    demo = TrainerConfig(num_classes=5)
    assert demo.preprocessing_module == "mobilenet_v2"  # keras.applications as before
    assert demo.pooling == "avg" and demo.backbone_output is None
    hub = TrainerConfig.from_dict(
        {
            "num_classes": 5,
            "architecture": "ResNetBackbone",
            "preprocessing": {"scale": 0.5, "offset": [1, 2, 3]},
            "pooling": "max",
            "backbone_output": "P3",
            "custom_modules": ["my_project.layers"],
        }
    )
    assert hub.preprocessing_module == {"scale": 0.5, "offset": [1, 2, 3]}
    assert hub.custom_modules == ("my_project.layers",)
    assert TrainerConfig.from_dict(hub.to_dict()) == hub
    assert hub.to_dict()["custom_modules"] == ["my_project.layers"]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"architecture": "ResNetBackbone"}, r"or any name with an explicit `preprocessing`"),
        ({"preprocessing": "caffe"}, r"Invalid trainer setting `preprocessing`"),
        ({"pooling": "cls"}, r"Invalid trainer setting `pooling`"),
        ({"backbone_output": True}, r"Invalid trainer setting `backbone_output`"),
        ({"custom_modules": ["a b"]}, r"Received: custom_modules=\['a b'\]"),
    ],
)
def test_trainer_config_rejects_bad_head_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainerConfig(num_classes=5, **settings)

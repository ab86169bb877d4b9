"""build_backbone and friends: plain Keras, no TFX."""

import os
import re

import h5py
import keras
import numpy as np
import pytest

from backbone_regularizer.components.backbone_loader import arguments
from backbone_regularizer.components.backbone_loader.applications import (
    build_backbone,
    load_weights_file,
    save_backbone,
)
from backbone_regularizer.components.backbone_loader.arguments import (
    check_pooling,
    check_weights,
    describe_source,
    parse_input_shape,
)
from backbone_regularizer.components.regularizer.keras_file import weights_sha256
from tests.backbone_loader.helpers import KWARGS, SHAPE, mobilenet, recording_constructor


def assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.weights, b.weights, strict=True):
        assert x.path == y.path
        np.testing.assert_array_equal(x.numpy(), y.numpy())


@pytest.mark.parametrize(
    "pooling, output_shape", [(None, (None, 1, 1, 1280)), ("avg", (None, 1280))]
)
def test_build_with_weights_none(pooling, output_shape):
    model = build_backbone("MobileNetV2", "none", SHAPE, pooling=pooling, kwargs=KWARGS)
    assert model.name == "mobilenetv2_0.35_32"
    assert tuple(model.input.shape) == (None, 32, 32, 3)
    assert tuple(model.output.shape) == output_shape
    assert "predictions" not in [layer.name for layer in model.layers]  # include_top=False
    assert model.count_params() == mobilenet().count_params()


def test_build_accepts_json_arguments_and_max_pooling():
    model = build_backbone(
        "MobileNetV2", None, "[32, 32, 3]", pooling="max", kwargs='{"alpha": 0.35}'
    )
    assert isinstance(model.layers[-1], keras.layers.GlobalMaxPooling2D)
    assert tuple(model.output.shape) == (None, 1280)


def test_weights_from_local_weights_file(tmp_path):
    source = mobilenet()
    path = str(tmp_path / "source.weights.h5")
    source.save_weights(path)
    fresh = build_backbone("MobileNetV2", "none", SHAPE, kwargs=KWARGS)
    # Two random initializations differ, so equality below comes from the file.
    assert weights_sha256(fresh) != weights_sha256(source)

    loaded = build_backbone("MobileNetV2", path, SHAPE, kwargs=KWARGS)
    assert_same_weights(loaded, source)
    assert weights_sha256(loaded) == weights_sha256(source)


def test_weights_from_legacy_h5_file(tmp_path):
    # keras.applications downloads legacy .h5 files; a pre-fetched copy must load too. Keras 3's
    # public API only writes .weights.h5, so write the legacy format with Keras' own writer.
    from keras.src.legacy.saving import legacy_h5_format

    source = mobilenet()
    path = str(tmp_path / "mobilenet_v2_no_top.h5")
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    loaded = build_backbone("MobileNetV2", path, SHAPE, kwargs=KWARGS)
    assert weights_sha256(loaded) == weights_sha256(source)


def test_weights_file_shape_mismatch_names_the_weight(tmp_path):
    path = str(tmp_path / "alpha035.weights.h5")
    mobilenet(alpha=0.35).save_weights(path)
    with pytest.raises(ValueError) as info:
        build_backbone("MobileNetV2", path, SHAPE, kwargs={"alpha": 0.5})
    message = str(info.value)
    assert "Weights file does not match the backbone 'mobilenetv2_0.50_32'" in message
    assert "block_1_project/kernel expects shape (1, 1, 48, 16), the file has (1, 1, 48, 8)" in (
        message
    )
    assert f"Received: weights={path!r}" in message


def test_weights_file_of_another_architecture(tmp_path):
    path = str(tmp_path / "mobilenet.weights.h5")
    mobilenet().save_weights(path)
    with pytest.raises(ValueError, match=r"does not match the backbone 'resnet50'.*could not be"):
        build_backbone("ResNet50", path, SHAPE)


def test_weights_file_errors_use_the_label(tmp_path):
    model = mobilenet()
    junk = tmp_path / "junk.weights.h5"
    junk.write_text("not hdf5")
    with pytest.raises(ValueError, match=r"Expected a Keras weights file \(HDF5\)\. .*gs://b/j"):
        load_weights_file(model, junk, label="gs://b/junk.weights.h5")
    with pytest.raises(FileNotFoundError, match="missing"):
        load_weights_file(model, tmp_path / "absent.weights.h5")


@pytest.mark.parametrize(
    "name, suggestion",
    [
        ("MobilenetV2", "Did you mean 'MobileNetV2'"),
        ("mobilenetv2", "Did you mean 'MobileNetV2'"),
        ("ResNet", "'ResNet50'"),
        ("EfficientNetBO", "Did you mean 'EfficientNetB0'"),
        ("ConvNextTiny", "Did you mean 'ConvNeXtTiny'"),
        ("Transformer", "Available: ['ConvNeXtBase'"),
    ],
)
def test_unknown_architecture_suggests_close_names(name, suggestion):
    with pytest.raises(ValueError) as info:
        build_backbone(name, "none", SHAPE)
    assert str(info.value).startswith("Unknown architecture. Expected the name of a keras.app")
    assert suggestion in str(info.value)
    assert str(info.value).endswith(f"Received: architecture={name!r}")


@pytest.mark.parametrize(
    "name, shape",
    [("MobileNetV2", [16, 16, 3]), ("MobileNetV2", "[8, 8, 3]"), ("ResNet50", [8, 8, 3])],
)
def test_too_small_input_names_the_minimum(name, shape):
    kwargs = KWARGS if name == "MobileNetV2" else None
    with pytest.raises(ValueError) as info:
        build_backbone(name, "none", shape, kwargs=kwargs)
    expected_shape = parse_input_shape(shape)
    assert str(info.value) == (
        f"Input shape too small for {name}. Expected height and width of at least 32x32 "
        f"(the minimum of keras.applications.{name}). "
        f"Received: input_shape={list(expected_shape)}"
    )


def test_too_small_input_that_builds_an_empty_feature_map(monkeypatch):
    # Every keras.applications model rejects inputs below its minimum itself; a graph can still
    # build with a zero-size feature map, which global pooling would turn into NaN silently.
    def tiny(input_shape=None, alpha=1.0, include_top=True, weights=None, pooling=None, **_):
        inputs = keras.Input(input_shape)
        x = keras.layers.Conv2D(4, 5, name="valid_conv")(inputs)
        if pooling == "avg":
            x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, x)

    monkeypatch.setattr(keras.applications, "MobileNetV2", tiny)
    with pytest.raises(ValueError) as info:
        build_backbone("MobileNetV2", "none", [4, 4, 3], pooling="avg")
    # The model's auto-generated name ('functional', 'functional_79') depends on test order.
    assert re.search(
        r"Input shape too small for MobileNetV2: layer 'functional(_\d+)?/valid_conv'",
        str(info.value),
    )
    assert "empty feature map of shape (None, 0, 0, 4)" in str(info.value)
    assert build_backbone("MobileNetV2", "none", [5, 5, 3]).output.shape == (None, 1, 1, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpah": 0.35}, r"Unknown argument of keras.applications.MobileNetV2 .*'alpha'\?"),
        ({"include_top": True}, r"always builds a headless backbone"),
        ({"weights": "imagenet"}, r"use the `weights` argument"),
        ({"classes": 10}, r"no effect without the classification head"),
        ({"alpha": "big"}, r"Expected `alpha` of the same kind as its default 1.0 .*alpha='big'"),
        ({"alpha": [0.35]}, r"Expected JSON scalars"),
        ('{"alpha": 0.35', r"Expected a JSON object of constructor arguments"),
        ("[0.35]", r"Expected a JSON object \(dict\)"),
    ],
)
def test_bad_kwargs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_backbone("MobileNetV2", "none", SHAPE, kwargs=kwargs)


def test_arguments_keras_rejects_are_translated():
    # Keras checks the channel count for ImageNet weights before any download.
    with pytest.raises(ValueError) as info:
        build_backbone("MobileNetV2", "imagenet", [32, 32, 1], kwargs=KWARGS)
    message = str(info.value)
    assert message.startswith("keras.applications.MobileNetV2 rejected its arguments (")
    assert "The input must have 3 channels" in message
    assert "Received: keras.applications.MobileNetV2(alpha=0.35, include_top=False" in message


def test_imagenet_calls_keras_with_imagenet_weights(monkeypatch):
    # The real ImageNet download cannot run here (no internet); check that the loader makes
    # the right call and leaves downloading and caching to Keras.
    calls = []
    monkeypatch.setattr(keras.applications, "MobileNetV2", recording_constructor(calls))
    model = build_backbone("MobileNetV2", "imagenet", SHAPE, pooling="avg", kwargs=KWARGS)
    assert calls == [
        {
            "alpha": 0.35,
            "include_top": False,
            "weights": "imagenet",
            "input_shape": (32, 32, 3),
            "pooling": "avg",
        }
    ]
    assert tuple(model.output.shape) == (None, 1280)


def test_imagenet_download_failure_explains_the_offline_option(monkeypatch):
    def offline(**kwargs):
        # What keras.utils.get_file raises without network access.
        raise Exception(
            "URL fetch failure on https://storage.googleapis.com/x_no_top.h5: None -- "
            "[Errno -3] Temporary failure in name resolution"
        )

    monkeypatch.setattr(keras.applications, "ResNet50", offline)
    with pytest.raises(OSError, match=r"pre-downloaded weights file: pass its path/URI"):
        build_backbone("ResNet50", "imagenet", SHAPE)


def test_validators():
    assert check_weights(None) == "none"
    assert check_weights("gs://bucket/b.weights.h5") == "gs://bucket/b.weights.h5"
    assert check_pooling("none") is None
    assert parse_input_shape("[null, null, 3]") == (None, None, 3)
    for bad in ([32, 32, 0], [32, 32, True], [32, 32, None], "32x32x3", [[32], 32, 3]):
        with pytest.raises(ValueError, match="Expected \\(height, width, channels\\)"):
            parse_input_shape(bad)
    for bad in ("ImageNet", "weights.pt", 3):
        with pytest.raises(ValueError, match="Expected 'imagenet', 'none'"):
            check_weights(bad)


def test_describe_source():
    assert describe_source("ResNet50", "imagenet") == (
        "keras.applications.ResNet50(weights=imagenet)"
    )
    assert describe_source("ResNet50", None) == "keras.applications.ResNet50(weights=None)"
    assert describe_source("ResNet50", "gs://b/r.weights.h5") == "gs://b/r.weights.h5"


def test_save_backbone_returns_the_reloaded_checksum(tmp_path):
    model = mobilenet()
    path = tmp_path / "nested" / "model.keras"
    digest = save_backbone(model, path)
    reloaded = keras.saving.load_model(path, compile=False)
    assert digest == weights_sha256(reloaded) == weights_sha256(model)
    assert_same_weights(reloaded, model)
    with pytest.raises(ValueError, match="Expected a path ending in .keras"):
        save_backbone(model, os.path.join(tmp_path, "model.h5"))


def test_available_architectures_are_keras_applications():
    names = arguments.available_architectures()
    assert {"MobileNetV2", "ResNet50", "EfficientNetB0", "ConvNeXtTiny"} <= set(names)
    assert all(callable(getattr(keras.applications, n)) for n in names)

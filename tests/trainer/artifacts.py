"""A BackboneRegularizer-shaped output written by a test: the Trainer's ``base_model``."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from backbone_regularizer.components.regularizer import RegularizationSpec, regularize_file
from backbone_regularizer.components.regularizer.component_spec import MODEL_FILE, REPORT_FILE
from backbone_regularizer.components.regularizer.workflow import report_path_for
from tests import zoo


def small_cnn() -> keras.Model:
    """Conv, BatchNorm, depthwise conv: a backbone whose features stay alive with random
    weights (a random MobileNetV2's pooled features are ~1e-11 at 32x32)."""
    init = keras.initializers.GlorotUniform(seed=1)
    inputs = keras.Input(zoo.SMALL)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", kernel_initializer=init)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.DepthwiseConv2D(3, padding="same", depthwise_initializer=init)(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Conv2D(16, 1, kernel_initializer=init)(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    return keras.Model(inputs, x, name="small_cnn")


def regularized_artifact(
    folder: Path, spec: RegularizationSpec, backbone: keras.Model | None = None
) -> Path:
    """``folder/regularized/{Format-Serving/model.keras, regularization_report.json}``: the
    BackboneRegularizer's output for ``backbone`` (default: the small MobileNetV2 of
    ``tests.zoo``, no top) and ``spec``; returns its uri."""
    source = folder / "source.keras"
    (backbone or zoo.mobilenet_v2(include_top=False)).save(source)
    uri = folder / "regularized"
    serving = uri / "Format-Serving"
    serving.mkdir(parents=True)
    regularize_file(source, serving / MODEL_FILE, spec)
    os.replace(report_path_for(serving / MODEL_FILE), uri / REPORT_FILE)
    return uri

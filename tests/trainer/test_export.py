"""The exported SavedModel: serialized tf.Examples in, probabilities and class names out."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from backbone_regularizer.pipeline.trainer.export import (
    LABEL_MAP_FILE,
    export_serving_model,
    read_label_map,
)
from tests.trainer.tfrecords import example


def _model(outputs: int) -> keras.Model:
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(outputs, activation="softmax")(pooled))


def test_serving_signature_returns_class_names_with_scores(tmp_path):
    serving = tmp_path / "serving"
    export_serving_model(_model(3), str(serving), (32, 32), "mobilenet_v2", ["ant", "cat", "dog"])

    loaded = tf.saved_model.load(str(serving))
    outputs = loaded.signatures["serving_default"](
        examples=tf.constant([example(0, 0), example(1, 1)])
    )
    probabilities = outputs["probabilities"].numpy()
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # TF Serving's Classify outputs: every class name with its score, in index order.
    assert outputs["classes"].dtype == tf.string
    assert outputs["classes"].numpy().tolist() == [[b"ant", b"cat", b"dog"]] * 2
    np.testing.assert_array_equal(outputs["scores"].numpy(), probabilities)
    assert os.path.exists(serving / "model.keras")
    assert json.loads((serving / LABEL_MAP_FILE).read_text()) == {"ant": 0, "cat": 1, "dog": 2}
    assert read_label_map(str(serving)) == {"ant": 0, "cat": 1, "dog": 2}


def test_read_label_map_without_a_file_is_none(tmp_path):
    assert read_label_map(str(tmp_path)) is None


def test_a_bad_label_map_file_names_the_file(tmp_path):
    (tmp_path / LABEL_MAP_FILE).write_text('{"cat": 1}')
    with pytest.raises(ValueError, match="^Expected a label map") as error:
        read_label_map(str(tmp_path))
    assert LABEL_MAP_FILE in str(error.value)


@pytest.mark.parametrize("names", [["a", "b"], ["a", "a", "b"], ["a", "b", "c", "d"]])
def test_class_names_must_name_each_output_once(tmp_path, names):
    with pytest.raises(ValueError, match="^Expected 3 unique class names, one per model output"):
        export_serving_model(_model(3), str(tmp_path / "s"), (32, 32), "mobilenet_v2", names)

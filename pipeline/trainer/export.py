"""Export the fine-tuned classifier: a SavedModel serving tf.Examples, plus model.keras and
the label map.

The ``serving_default`` signature takes serialized tf.Examples (what TFMA and TF Serving send)
and returns, per example:

* ``probabilities``: float32 ``[batch, N]``, index ``i`` = class ``i`` (what TFMA reads);
* ``classes``: string ``[batch, N]``, the class names in index order, and ``scores``: float32
  ``[batch, N]``, their probabilities: the two outputs of TF Serving's Classify API, so a
  consumer never maps indices to names itself.

``label_map.json`` (class name -> index, ``LABEL_MAP_FILE``) lies beside ``saved_model.pb``, so
the Pusher copies it with the model and anyone holding a pushed version can read its classes.

>>> export_serving_model(model, serving_dir, (32, 32), "mobilenet_v2", ["cat", "dog"])
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import keras
import tensorflow as tf

from backbone_regularizer.components import model_artifact
from backbone_regularizer.components.image_ingestion import labels
from backbone_regularizer.components.image_ingestion.images import label_map_to_json
from backbone_regularizer.pipeline.trainer.data import IMAGE_KEY, decode_images

SERVING_SIGNATURE = "serving_default"
PROBABILITIES_KEY = "probabilities"
CLASSES_KEY = "classes"
SCORES_KEY = "scores"
# The label map beside saved_model.pb (read it back with ``read_label_map``).
LABEL_MAP_FILE = labels.LABEL_MAP_FILE
read_label_map = labels.read_label_map_file


def export_serving_model(
    model: keras.Model,
    serving_dir: str,
    image_size: tuple[int, int],
    preprocessing_module: str | dict,
    class_names: Sequence[str],
) -> None:
    """Write ``serving_dir``: the SavedModel (see the module docstring), ``model.keras`` beside
    it (Keras 3 cannot load a SavedModel) and ``label_map.json``.

    ``serving_dir`` ends up holding exactly these files, ``saved_model.pb`` moved in last
    (``model_artifact.publish_folder``): what a killed attempt left there is replaced.

    Raises:
        ValueError: ``class_names`` does not name each of the model's outputs once.
    """
    outputs = model.output_shape[-1]
    if len(class_names) != outputs or len(set(class_names)) != len(class_names):
        raise ValueError(
            f"Expected {outputs} unique class names, one per model output. "
            f"Received: class_names={list(class_names)!r}"
        )
    feature_spec = {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    names = tf.constant(list(class_names), tf.string)

    def serve(serialized):
        parsed = tf.io.parse_example(serialized, feature_spec)
        images = decode_images(parsed[IMAGE_KEY], image_size, preprocessing_module)
        probabilities = model(images, training=False)
        classes = tf.tile(names[tf.newaxis, :], [tf.shape(probabilities)[0], 1])
        return {
            PROBABILITIES_KEY: probabilities,
            CLASSES_KEY: classes,
            SCORES_KEY: probabilities,
        }

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SERVING_SIGNATURE,
        serve,
        input_signature=[tf.TensorSpec([None], tf.string, name="examples")],
    )
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        local = os.path.join(tmp, "serving")
        archive.write_out(local, verbose=False)
        model.save(os.path.join(local, "model.keras"))
        with open(os.path.join(local, LABEL_MAP_FILE), "w") as handle:
            handle.write(label_map_to_json(labels.from_names(class_names)))
        model_artifact.publish_folder(serving_dir, local, last=model_artifact.SAVED_MODEL_FILE)

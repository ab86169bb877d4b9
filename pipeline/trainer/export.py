"""Export the fine-tuned classifier: a SavedModel serving tf.Examples, plus model.keras."""

from __future__ import annotations

import os
import tempfile

import keras
import tensorflow as tf

from backbone_regularizer.components import model_artifact
from backbone_regularizer.pipeline.trainer.data import IMAGE_KEY, decode_images

SERVING_SIGNATURE = "serving_default"


def export_serving_model(
    model: keras.Model,
    serving_dir: str,
    image_size: tuple[int, int],
    preprocessing_module: str | dict,
) -> None:
    """Write ``serving_dir``: a SavedModel whose ``serving_default`` takes serialized
    tf.Examples (what TFMA and TF Serving send) and returns class probabilities, and
    ``model.keras`` beside it (Keras 3 cannot load a SavedModel).

    ``serving_dir`` ends up holding exactly these files, ``saved_model.pb`` moved in last
    (``model_artifact.publish_folder``): what a killed attempt left there is replaced.
    """
    feature_spec = {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}

    def serve(serialized):
        parsed = tf.io.parse_example(serialized, feature_spec)
        images = decode_images(parsed[IMAGE_KEY], image_size, preprocessing_module)
        return {"probabilities": model(images, training=False)}

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
        model_artifact.publish_folder(serving_dir, local, last=model_artifact.SAVED_MODEL_FILE)

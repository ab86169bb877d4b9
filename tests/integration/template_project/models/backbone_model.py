"""The project's own run_fn: fine-tune the regularized backbone the Trainer hands over."""

from __future__ import annotations

import json
import math
import os

import keras
import tensorflow as tf

from backbone_regularizer.pipeline.trainer import load_base_model

PENALTIES_FILE = "penalties.json"


def _dataset(file_patterns: list[str], image_shape: tuple[int, int, int], batch_size: int):
    files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(record):
        example = tf.io.parse_single_example(record, features)
        image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, image_shape[:2])
        return image, example["label"]

    return tf.data.TFRecordDataset(files, compression_type="GZIP").map(parse).batch(batch_size)


def _penalty(model: keras.Model) -> float:
    return float(sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses))


def run_fn(fn_args) -> None:
    base, report = load_base_model(fn_args)
    recorded = report["penalty"]["total_in_loss"]
    at_load = _penalty(base)
    if not base.losses or not math.isclose(at_load, recorded, rel_tol=1e-5):
        raise RuntimeError(
            f"Expected the regularized backbone's penalties in model.losses ({recorded}). "
            f"Received: {len(base.losses)} terms summing to {at_load}"
        )
    inputs = keras.Input(base.input_shape[1:])
    features = keras.layers.GlobalAveragePooling2D()(base(inputs))
    outputs = keras.layers.Dense(fn_args.custom_config["num_classes"], activation="softmax")(
        features
    )
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(
        _dataset(fn_args.train_files, base.input_shape[1:], batch_size=4),
        validation_data=_dataset(fn_args.eval_files, base.input_shape[1:], batch_size=4),
        epochs=1,
        verbose=2,
    )
    tf.io.gfile.makedirs(fn_args.serving_model_dir)
    model.save(os.path.join(fn_args.serving_model_dir, "model.keras"))
    summary = {
        "recorded_penalty": recorded,
        "penalty_at_load": at_load,
        "penalty_terms_backbone": len(base.losses),
        "penalty_terms_model": len(model.losses),
        "regularized_weights": report["counts"]["regularized"],
        "loss": history.history["loss"],
    }
    with tf.io.gfile.GFile(os.path.join(fn_args.serving_model_dir, PENALTIES_FILE), "w") as f:
        f.write(json.dumps(summary))

"""tf.data input pipeline over the image tf.Examples: parse, decode, resize, preprocess."""

from __future__ import annotations

import tensorflow as tf

from backbone_regularizer.pipeline.trainer.preprocessing import preprocess_fn

IMAGE_KEY = "image"
LABEL_KEY = "label"


def decode_images(encoded: tf.Tensor, image_size: tuple[int, int], module: str | dict) -> tf.Tensor:
    """Encoded PNG/JPEG bytes [batch] -> preprocessed float32 [batch, h, w, 3].

    ``module``: a keras.applications module name (its ``preprocess_input``, e.g. MobileNetV2
    scales to [-1, 1]) or a ``{"scale", "offset"}`` dict
    (``backbone_regularizer.pipeline.trainer.preprocessing``).
    """

    def decode(one):
        image = tf.io.decode_image(one, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return tf.image.resize(tf.cast(image, tf.float32), image_size)

    images = tf.map_fn(decode, encoded, fn_output_signature=tf.float32)
    return preprocess_fn(module)(images)


def _augment(images: tf.Tensor, seed: int) -> tf.Tensor:
    # Small shifts and brightness changes: label-preserving for digits and natural images.
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    pad = tf.maximum(height // 8, 1)
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    cropped = tf.image.random_crop(padded, tf.stack([shape[0], height, width, 3]), seed=seed)
    return tf.image.random_brightness(cropped, 0.1, seed=seed)


def make_dataset(
    file_pattern: list[str] | str,
    image_size: tuple[int, int],
    preprocessing_module: str | dict,
    batch_size: int,
    training: bool,
    augment: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of ``(images, labels)`` from GZIP TFRecords of tf.Examples.

    Parsing and decoding happen once (cached); augmentation and shuffling per epoch.

    Raises:
        ValueError: no file matches ``file_pattern``.
    """
    files = tf.io.gfile.glob(file_pattern)
    if not files:
        raise ValueError(f"Expected TFRecord files. Received: no match for {file_pattern!r}")
    spec = {
        IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
    dataset = tf.data.TFRecordDataset(sorted(files), compression_type="GZIP")
    dataset = dataset.batch(batch_size).map(
        lambda records: tf.io.parse_example(records, spec), num_parallel_calls=tf.data.AUTOTUNE
    )
    dataset = dataset.map(
        lambda ex: (
            decode_images(ex[IMAGE_KEY], image_size, preprocessing_module),
            ex[LABEL_KEY],
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).cache()
    if training:
        dataset = dataset.unbatch().shuffle(4096, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size)
        if augment:
            dataset = dataset.map(
                lambda x, y: (_augment(x, seed), y), num_parallel_calls=tf.data.AUTOTUNE
            )
    return dataset.prefetch(tf.data.AUTOTUNE)

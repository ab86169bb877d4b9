"""Tiny image tf.Example files for Trainer tests (written by the tests, nothing downloaded)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image


def png_bytes(value: int, size: int = 32) -> bytes:
    rng = np.random.default_rng(value)
    pixels = (rng.random((size, size, 3)) * 60 + value * 40).clip(0, 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def example(label: int, index: int) -> bytes:
    feature = {
        "image": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[png_bytes(label * 7 + index % 3)])
        ),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_split(folder: Path, per_class: int, num_classes: int = 2) -> str:
    """Write ``folder/data.gz`` (GZIP TFRecord) and return a glob pattern for it."""
    folder.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(folder / "data.gz"), options="GZIP") as writer:
        for label in range(num_classes):
            for index in range(per_class):
                writer.write(example(label, index))
    return str(folder / "*")


def indexed_example(label: int, index: int, size: int = 8) -> bytes:
    """An example whose PNG's first pixel stores ``index`` (0..65535): records tell apart."""
    pixels = np.zeros((size, size, 3), "uint8")
    pixels[0, 0, :2] = divmod(index, 256)
    pixels[1:, :, :] = 40 * label
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buffer.getvalue()])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_shards(folder: Path, labels: list[int], shards: int) -> list[str]:
    """Write ``labels`` as ``indexed_example``s, record i into shard ``i % shards``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(folder / f"data-{i:05d}-of-{shards:05d}.gz") for i in range(shards)]
    writers = [tf.io.TFRecordWriter(path, options="GZIP") for path in paths]
    for index, label in enumerate(labels):
        writers[index % shards].write(indexed_example(label, index))
    for writer in writers:
        writer.close()
    return paths


def record_index(image) -> int:
    """The ``index`` an ``indexed_example``'s decoded, unresized image [h, w, 3] carries."""
    pixel = np.asarray(image)[0, 0]
    return int(round(float(pixel[0]))) * 256 + int(round(float(pixel[1])))


def example_index(record: bytes) -> int:
    """The ``index`` of a serialized ``indexed_example``."""
    example = tf.train.Example.FromString(record)
    png = example.features.feature["image"].bytes_list.value[0]
    return record_index(np.asarray(Image.open(io.BytesIO(png))))

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

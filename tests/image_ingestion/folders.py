"""Tiny image folders written by the tests (8x8 images made with Pillow, nothing downloaded)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable

from PIL import Image

from backbone_regularizer.components.image_ingestion.splits import (
    DEFAULT_TRAIN_EVAL_RATIO,
    assign_split,
)


def image_bytes(seed: int = 0, image_format: str = "PNG") -> bytes:
    """Returns an encoded 8x8 RGB image whose colour depends on ``seed``."""
    buffer = io.BytesIO()
    colour = (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256)
    Image.new("RGB", (8, 8), colour).save(buffer, format=image_format)
    return buffer.getvalue()


def write_file(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def write_images(root: str, filenames: Iterable[str]) -> dict[str, bytes]:
    """Writes ``<root>/<label>/<name>`` images; JPEG for ``.jpg``/``.jpeg`` names, else PNG.

    Returns:
        filename (relative to ``root``) -> the bytes written.
    """
    written = {}
    for seed, filename in enumerate(filenames):
        is_jpeg = filename.lower().endswith((".jpg", ".jpeg"))
        data = image_bytes(seed, "JPEG" if is_jpeg else "PNG")
        write_file(os.path.join(root, filename), data)
        written[filename] = data
    return written


def names_in_split(
    label: str,
    split: str,
    count: int,
    train_eval_ratio: tuple[int, int] = DEFAULT_TRAIN_EVAL_RATIO,
    suffix: str = ".png",
) -> list[str]:
    """Returns the first ``count`` filenames ``<label>/img<i><suffix>`` hashed into ``split``."""
    names = []
    i = 0
    while len(names) < count:
        filename = f"{label}/img{i:03d}{suffix}"
        if assign_split(filename, train_eval_ratio) == split:
            names.append(filename)
        i += 1
    return names

"""Generated JPEG class folders for the scale benchmarks: ``<root>/class_<k>/img_<i>.jpg``.

Image ``i`` belongs to class ``i % classes`` and depends only on ``(seed, i)``, so the first
500 images of a 2,000-image folder are the 500 of a 500-image folder. Each image is a smooth
random field tinted with its class's colour, a bright square at a class-dependent place, and
fine noise that gives the file a photo-like JPEG size (~25 KB at 224x224, quality 90).

>>> write_jpeg_classes(Path("/tmp/images"), count=500)
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_COLOURS = np.array(
    [[200, 60, 60], [60, 170, 70], [60, 80, 200], [210, 190, 50], [150, 60, 190]],
    dtype=np.float32,
)


def jpeg_bytes(index: int, size: int = 224, classes: int = 5, seed: int = 0) -> bytes:
    """The encoded JPEG of image ``index`` (see the module docstring)."""
    rng = np.random.default_rng([seed, index])
    label = index % classes
    coarse = rng.uniform(0, 255, (size // 16 or 1, size // 16 or 1, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32)
    pixels = 0.55 * field + 0.45 * CLASS_COLOURS[label % len(CLASS_COLOURS)]
    side = size // 4
    row = (label * side // 2 + int(rng.integers(0, side))) % (size - side)
    col = (label * side + int(rng.integers(0, side))) % (size - side)
    pixels[row : row + side, col : col + side] += 70
    pixels += 10 * rng.standard_normal(pixels.shape, dtype=np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_jpeg_classes(
    root: Path, count: int, size: int = 224, classes: int = 5, seed: int = 0
) -> Path:
    """Writes ``count`` images into ``classes`` class folders under ``root``; returns ``root``.

    Existing files with the same names are overwritten with the same bytes.
    """
    for k in range(classes):
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = root / f"class_{i % classes}" / f"img_{i:06d}.jpg"
        path.write_bytes(jpeg_bytes(i, size, classes, seed))
    return root

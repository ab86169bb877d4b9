"""The embedded default's data and source backbone, built offline from scikit-learn's digits.

* source task: digits 0-4, used offline to pre-train MobileNetV2 (alpha 0.35, 32x32, truncated;
  see ``backbone_regularizer.pipeline.demo.source_backbone``): our stand-in for ImageNet weights.
  The pre-trained file is
  committed; it is copied to ``source_backbone/Format-Serving/model.keras``;
* target task: digits 5-9 as PNG folders ``span-<N>/digit_<d>/<i>.png``, with few training
  images so that fine-tuning overfits without regularization.

Deterministic (seeded), generated on first use, reused afterwards, never committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from backbone_regularizer.pipeline.demo import source_backbone

log = logging.getLogger(__name__)

SOURCE_DIGITS = source_backbone.SOURCE_DIGITS
TARGET_DIGITS = (5, 6, 7, 8, 9)
IMAGE_SIZE = source_backbone.IMAGE_SIZE
BACKBONE_DIR = "source_backbone"
MARKER = "demo_data.json"


def _digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images, data.target


def _to_rgb(image8x8: np.ndarray) -> np.ndarray:
    """8x8 values 0..16 -> 32x32x3 uint8 (bilinear upsampling)."""
    from PIL import Image

    gray = Image.fromarray(np.uint8(np.clip(image8x8 * 16, 0, 255)))
    big = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    return np.repeat(np.asarray(big)[..., None], 3, axis=2)


def target_indices(span: int, per_class: int, seed: int = 0) -> dict[int, list[int]]:
    """Which digits images make up ``span``: disjoint slices per span, seeded order."""
    _, labels = _digits()
    rng = np.random.default_rng(seed)
    out = {}
    for digit in TARGET_DIGITS:
        indices = np.flatnonzero(labels == digit)
        rng.shuffle(indices)
        start = (span - 1) * per_class
        chosen = indices[start : start + per_class]
        if len(chosen) < per_class:
            raise ValueError(
                f"Expected {per_class} images of digit {digit} for span {span}. "
                f"Received: only {len(chosen)} left (digits has ~180 per class)."
            )
        out[digit] = sorted(int(i) for i in chosen)
    return out


def write_target_span(data_root: Path, span: int, per_class: int) -> Path:
    """Write ``span-<span>/digit_<d>/<index>.png`` for the target digits; return the folder."""
    from PIL import Image

    images, _ = _digits()
    folder = data_root / f"span-{span}"
    for digit, indices in target_indices(span, per_class).items():
        class_dir = folder / f"digit_{digit}"
        class_dir.mkdir(parents=True, exist_ok=True)
        for index in indices:
            Image.fromarray(_to_rgb(images[index])).save(class_dir / f"{index:04d}.png")
    return folder


def source_images() -> tuple[np.ndarray, np.ndarray]:
    """The source task's images (digits 0-4) as 32x32 RGB uint8, and their labels."""
    images, labels = _digits()
    mask = np.isin(labels, SOURCE_DIGITS)
    return np.stack([_to_rgb(img) for img in images[mask]]), labels[mask]


def install_source_backbone(folder: Path) -> dict:
    """Copy the committed pre-trained backbone to ``folder/Format-Serving/model.keras``."""
    import shutil

    path = Path(folder) / source_backbone.MODEL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_backbone.SHIPPED, path)
    return source_backbone.shipped_info()


def backbone_model_path(root: Path) -> Path:
    return Path(root) / BACKBONE_DIR / source_backbone.MODEL_FILE


def ensure_demo_data(root: Path, per_class: int = 60) -> dict:
    """Build the demo data set and source backbone under ``root`` unless already there."""
    root = Path(root)
    marker = root / MARKER
    settings = {
        "per_class": per_class,
        "digits": list(TARGET_DIGITS),
        "backbone": source_backbone.settings(),
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("key") == key and backbone_model_path(root).exists():
            return info
    log.info("building demo data under %s (first run only)", root)
    print(f"building demo data under {root} (first run only)")
    write_target_span(root / "images", 1, per_class)
    pretraining = install_source_backbone(root / BACKBONE_DIR)
    info = {"key": key, **settings, "spans": [1], "pretraining": pretraining}
    marker.write_text(json.dumps(info, indent=2))
    return info


def add_span(root: Path, per_class: int = 60) -> int:
    """Write the next span of target images (new data for a scheduled re-run)."""
    root = Path(root)
    info = json.loads((root / MARKER).read_text())
    span = max(info["spans"]) + 1
    write_target_span(root / "images", span, per_class)
    info["spans"].append(span)
    (root / MARKER).write_text(json.dumps(info, indent=2))
    return span

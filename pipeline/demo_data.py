"""The embedded default's data and source backbone, built offline from scikit-learn's digits.

* source task: digits 0-4, used once to pre-train MobileNetV2 (alpha 0.35, 32x32): our
  stand-in for ImageNet weights, saved as ``source_backbone.weights.h5``;
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

log = logging.getLogger(__name__)

SOURCE_DIGITS = (0, 1, 2, 3, 4)
TARGET_DIGITS = (5, 6, 7, 8, 9)
IMAGE_SIZE = 32
ALPHA = 0.35
WEIGHTS_NAME = "source_backbone.weights.h5"
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


def pretrain_source_backbone(path: Path, epochs: int = 15, seed: int = 0) -> dict:
    """Pre-train MobileNetV2 on digits 0-4 and save the backbone's weights to ``path``."""
    import keras

    keras.utils.set_random_seed(seed)
    images, labels = _digits()
    mask = np.isin(labels, SOURCE_DIGITS)
    x = np.stack([_to_rgb(img) for img in images[mask]]).astype("float32")
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    y = labels[mask]
    backbone = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), alpha=ALPHA
    )
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # Keras' 0.999 needs thousands of steps; this short pre-training has ~200.
            layer.momentum = 0.9
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    features = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    model = keras.Model(
        inputs, keras.layers.Dense(len(SOURCE_DIGITS), activation="softmax")(features)
    )
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    order = np.random.default_rng(seed).permutation(len(x))
    history = model.fit(
        x[order], y[order], batch_size=64, epochs=epochs, validation_split=0.2, verbose=0
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    backbone.save_weights(path)
    return {
        "source_train_images": int(len(x)),
        "source_val_accuracy": float(history.history["val_accuracy"][-1]),
        "epochs": epochs,
    }


def ensure_demo_data(root: Path, per_class: int = 60) -> dict:
    """Build the demo data set and source backbone under ``root`` unless already there."""
    root = Path(root)
    marker = root / MARKER
    settings = {"per_class": per_class, "digits": list(TARGET_DIGITS), "alpha": ALPHA}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("key") == key and (root / WEIGHTS_NAME).exists():
            return info
    log.info("building demo data under %s (first run only)", root)
    print(f"building demo data and pre-training the source backbone under {root} (first run only)")
    write_target_span(root / "images", 1, per_class)
    pretraining = pretrain_source_backbone(root / WEIGHTS_NAME)
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

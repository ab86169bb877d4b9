"""The demo's stand-in for ImageNet weights: a MobileNetV2 pre-trained offline on digits 0-4.

Plain Keras, no TFX. Three choices make its features transfer to digits 5-9, which it never sees
(measured with a linear probe, see the README):

* **a richer source task**: each source image in its four 90-degree rotations, labelled
  ``digit * 4 + rotation`` (20 classes: digit and orientation, as in RotNet, Gidaris et al.
  2018), with random shifts, small rotations and zooms; five classes alone teach features that
  separate five classes and little else;
* **truncation**: the backbone ends at an intermediate layer (``CUT_LAYER``, a 2x2 map of 192
  channels at 32x32 input) instead of MobileNetV2's 1x1 final map, whose features are specific
  to the source classes;
* **BatchNorm momentum 0.9** while pre-training: Keras' 0.999 needs thousands of steps.

The backbone is saved as a ``.keras`` model (``Format-Serving/model.keras``, what the pipeline's
Importer reads): a functional sub-model of ``keras.applications.MobileNetV2``, same layers.

>>> info = pretrain(Path("runs/demo/data/source_backbone"))
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SOURCE_DIGITS = (0, 1, 2, 3, 4)
IMAGE_SIZE = 32
ALPHA = 0.35
CUT_LAYER = "block_11_expand_relu"
ROTATIONS = 4
EPOCHS = 15
MODEL_FILE = os.path.join("Format-Serving", "model.keras")


def settings() -> dict:
    """What the saved backbone depends on (a change rebuilds the demo's cache)."""
    return {
        "architecture": "MobileNetV2",
        "alpha": ALPHA,
        "image_size": IMAGE_SIZE,
        "cut_layer": CUT_LAYER,
        "rotations": ROTATIONS,
        "epochs": EPOCHS,
        "source_digits": list(SOURCE_DIGITS),
    }


def source_task(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotated copies and their ``digit * ROTATIONS + k`` labels (images: [n, h, w, c])."""
    x = np.concatenate([np.rot90(images, k, axes=(1, 2)) for k in range(ROTATIONS)])
    y = np.concatenate([labels * ROTATIONS + k for k in range(ROTATIONS)])
    return x, y


def build_full(seed: int = 0):
    """The whole MobileNetV2 (random weights) and the 20-way pre-training classifier on it."""
    import keras

    keras.utils.set_random_seed(seed)
    backbone = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), alpha=ALPHA
    )
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    augment = keras.Sequential(
        [
            keras.layers.RandomTranslation(0.12, 0.12, fill_mode="constant", seed=seed),
            keras.layers.RandomRotation(0.06, fill_mode="constant", seed=seed),
            keras.layers.RandomZoom(0.15, fill_mode="constant", seed=seed),
        ],
        name="augment",
    )
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    features = keras.layers.GlobalAveragePooling2D()(backbone(augment(inputs)))
    classes = len(SOURCE_DIGITS) * ROTATIONS
    outputs = keras.layers.Dense(classes, activation="softmax")(features)
    return backbone, keras.Model(inputs, outputs)


def truncate(backbone):
    """The backbone up to ``CUT_LAYER``: a functional model with the same input."""
    import keras

    cut = backbone.get_layer(CUT_LAYER).output
    return keras.Model(backbone.input, cut, name=f"mobilenetv2_{ALPHA}_{IMAGE_SIZE}_{CUT_LAYER}")


def pretrain(folder: Path, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Pre-train on the source images (uint8 RGB, [n, 32, 32, 3]); save the truncated backbone.

    Writes ``folder/Format-Serving/model.keras``. Returns facts for the demo's marker file.
    """
    import keras

    x, y = source_task(images, labels)
    x = keras.applications.mobilenet_v2.preprocess_input(x.astype("float32"))
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    held_out = len(x) // 10
    backbone, model = build_full(seed)
    steps = EPOCHS * int(np.ceil((len(x) - held_out) / 64))
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,  # XLA made CPU epochs slower here, see TrainerConfig.jit_compile
    )
    history = model.fit(
        x[held_out:],
        y[held_out:],
        batch_size=64,
        epochs=EPOCHS,
        validation_data=(x[:held_out], y[:held_out]),
        verbose=0,
    )
    path = Path(folder) / MODEL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    truncated = truncate(backbone)
    truncated.save(path)
    return {
        "source_train_images": int(len(x) - held_out),
        "source_val_accuracy": float(history.history["val_accuracy"][-1]),
        "output_shape": list(truncated.output.shape[1:]),
        **settings(),
    }

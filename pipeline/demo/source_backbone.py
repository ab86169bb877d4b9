"""The demo's stand-in for ImageNet weights: a MobileNetV2 pre-trained offline on digits 0-4.

Plain Keras, no TFX. The pre-trained backbone is **committed** (``source_backbone.keras`` beside
this module, 0.28 MB) so that every `make run` starts from the same weights and skips
pre-training; ``python -m backbone_regularizer.pipeline.demo.source_backbone`` regenerates it (a
few minutes on 2 cores;
CPU training is not bit-reproducible, so a regenerated file differs slightly). It never sees the
target digits 5-9: its only data are scikit-learn's digits 0-4, labelled.

What makes its features transfer to digits 5-9 (a linear probe on pooled features, measured in
the README):

* **a richer source task**: each source image in its four 90-degree rotations, labelled
  ``digit * 4 + rotation`` (20 classes: digit and orientation, as in RotNet, Gidaris et al.
  2018), with random shifts, small rotations and zooms;
* **enough pre-training**: 30 epochs (15 left the source task at 0.74 training accuracy);
* **pre-training the network it is cut from, not the full MobileNetV2**: global pooling and the
  20-way classifier sit on ``PRETRAIN_LAYER`` (2x2x144 at 32x32 input); the 1x1 final map of the
  full network is never trained;
* **truncation below that**: the backbone ends at ``CUT_LAYER`` (a 4x4 map of 96 channels), the
  one cut whose pooled features stayed above 0.90 in every pre-training run we probed; deeper
  maps are more specific to the source classes;
* **BatchNorm momentum 0.9** while pre-training: Keras' 0.999 needs thousands of steps.

The backbone is a ``.keras`` functional sub-model of ``keras.applications.MobileNetV2`` (same
layers and names), what the pipeline's Importer reads as ``Format-Serving/model.keras``.

>>> info = pretrain(Path("/tmp/backbone.keras"), *demo_data.source_images())
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

SOURCE_DIGITS = (0, 1, 2, 3, 4)
IMAGE_SIZE = 32
ALPHA = 0.35
PRETRAIN_LAYER = "block_8_expand_relu"
CUT_LAYER = "block_6_expand_relu"
ROTATIONS = 4
EPOCHS = 30
SEED = 0
SHIPPED = Path(__file__).with_name("source_backbone.keras")
# Where the demo puts it: the folder layout the pipeline's Importer reads.
MODEL_FILE = "Format-Serving/model.keras"
# Facts about the shipped file's pre-training (written by `main` beside it).
SHIPPED_INFO = SHIPPED.with_suffix(".json")


def settings() -> dict:
    """What the demo's backbone depends on (a change rebuilds the demo's cache): the recipe,
    and the committed file itself by its SHA-256."""
    return {
        "architecture": "MobileNetV2",
        "alpha": ALPHA,
        "image_size": IMAGE_SIZE,
        "pretrain_layer": PRETRAIN_LAYER,
        "cut_layer": CUT_LAYER,
        "rotations": ROTATIONS,
        "epochs": EPOCHS,
        "source_digits": list(SOURCE_DIGITS),
        "file_sha256": hashlib.sha256(SHIPPED.read_bytes()).hexdigest(),
    }


def shipped_info() -> dict:
    """How the committed backbone was made (seed, source accuracy, output shape)."""
    return json.loads(SHIPPED_INFO.read_text())


def source_task(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotated copies and their ``digit * ROTATIONS + k`` labels (images: [n, h, w, c])."""
    x = np.concatenate([np.rot90(images, k, axes=(1, 2)) for k in range(ROTATIONS)])
    y = np.concatenate([labels * ROTATIONS + k for k in range(ROTATIONS)])
    return x, y


def build_full(seed: int = 0, pretrain_layer: str = PRETRAIN_LAYER):
    """MobileNetV2 (random weights) up to ``pretrain_layer``, and the 20-way pre-training
    classifier on it (augmentation, global average pooling, Dense)."""
    import keras

    keras.utils.set_random_seed(seed)
    full = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), alpha=ALPHA
    )
    for layer in full.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    backbone = keras.Model(full.input, full.get_layer(pretrain_layer).output)
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


def truncate(backbone, cut_layer: str = CUT_LAYER):
    """The backbone up to ``cut_layer``: a functional model with the same input."""
    import keras

    cut = backbone.get_layer(cut_layer).output
    return keras.Model(backbone.input, cut, name=f"mobilenetv2_{ALPHA}_{IMAGE_SIZE}_{cut_layer}")


def pretrain(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int = SEED,
    epochs: int = EPOCHS,
    pretrain_layer: str = PRETRAIN_LAYER,
    cut_layer: str = CUT_LAYER,
) -> dict:
    """Pre-train on the source images (uint8 RGB, [n, 32, 32, 3]); save the truncated backbone
    as the ``.keras`` file ``path``. Returns facts about the pre-training."""
    import keras

    x, y = source_task(images, labels)
    x = keras.applications.mobilenet_v2.preprocess_input(x.astype("float32"))
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    held_out = len(x) // 10
    backbone, model = build_full(seed, pretrain_layer)
    steps = epochs * int(np.ceil((len(x) - held_out) / 64))
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
        epochs=epochs,
        validation_data=(x[:held_out], y[:held_out]),
        verbose=0,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    truncated = truncate(backbone, cut_layer)
    truncated.save(path)
    return {
        "seed": seed,
        "epochs": epochs,
        "pretrain_layer": pretrain_layer,
        "cut_layer": cut_layer,
        "source_train_images": int(len(x) - held_out),
        "source_train_accuracy": float(history.history["accuracy"][-1]),
        "source_val_accuracy": float(history.history["val_accuracy"][-1]),
        "output_shape": list(truncated.output.shape[1:]),
        "weights": int(truncated.count_params()),
    }


def main(argv: list[str] | None = None) -> dict:
    """Regenerate the committed backbone (or write one elsewhere with ``--out``)."""
    from backbone_regularizer.pipeline.demo import data as demo_data  # it imports this module

    parser = argparse.ArgumentParser(description="Pre-train the demo's source backbone.")
    parser.add_argument("--out", type=Path, default=SHIPPED, help=".keras file to write")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--limit", type=int, help="use only this many source images (tests)")
    args = parser.parse_args(argv)
    images, labels = demo_data.source_images()
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    info = pretrain(args.out, images, labels, seed=args.seed, epochs=args.epochs)
    args.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    main()

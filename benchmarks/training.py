"""Training-side numbers on the demo task: penalty overhead and tf.data headroom.

What regularization buys in accuracy is measured by ``benchmarks.transfer_study``.

Everything runs in one process on the demo data (built by `make run` or on first use here),
so the numbers are ratios within one run on one machine.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from backbone_regularizer.components.image_ingestion.images import build_example
from backbone_regularizer.components.image_ingestion.splits import assign_split
from backbone_regularizer.components.regularizer import RegularizationSpec, regularize
from backbone_regularizer.pipeline.config import PipelineConfig
from backbone_regularizer.pipeline.demo.data import ensure_demo_data
from backbone_regularizer.pipeline.demo.source_backbone import IMAGE_SIZE
from backbone_regularizer.pipeline.trainer import module as trainer_module
from backbone_regularizer.pipeline.trainer.config import TrainerConfig
from backbone_regularizer.pipeline.trainer.data import make_dataset

RATIO = PipelineConfig().train_eval_ratio


def demo_root() -> Path:
    root = Path(PipelineConfig().data_root).parent
    ensure_demo_data(root)
    return root


def write_demo_examples(folder: Path) -> tuple[str, str]:
    """Span 1 of the demo images as train/eval GZIP TFRecords, split like ImageExampleGen."""
    images = sorted((demo_root() / "images" / "span-1").glob("*/*.png"))
    labels = {name: i for i, name in enumerate(sorted({p.parent.name for p in images}))}
    folder.mkdir(parents=True, exist_ok=True)
    writers = {
        split: tf.io.TFRecordWriter(str(folder / f"{split}.gz"), options="GZIP")
        for split in ("train", "eval")
    }
    for path in images:
        name = f"{path.parent.name}/{path.name}"
        example = build_example(path.read_bytes(), labels[path.parent.name], path.parent.name, name)
        writers[assign_split(name, RATIO)].write(example.SerializeToString())
    for writer in writers.values():
        writer.close()
    return str(folder / "train.gz"), str(folder / "eval.gz")


def _classifier(l2: float, input_size: int, alpha: float, kind: str = "l2") -> keras.Model:
    base = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(input_size, input_size, 3), alpha=alpha
    )
    if l2:
        regularize(base, RegularizationSpec(**{kind: l2}))
    else:
        for layer in base._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    config = TrainerConfig(num_classes=5, image_size=(input_size, input_size))
    model = trainer_module.build_classifier(base, config, mixed_precision=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def penalty_overhead(
    steps: int = 60, batch: int = 32, shapes=((32, 0.35), (96, 1.0))
) -> list[dict]:
    """Median train-step time with L2 and with L2-SP on every kernel vs none, same architecture
    and batch. L2-SP reads one anchor per weight (``alpha/2 * ||w - w0||^2``).

    Steps of the three models alternate, so drift on the machine hits all alike.
    """
    rows = []
    for input_size, alpha in shapes:
        x = np.random.default_rng(0).random((batch, input_size, input_size, 3), "float32")
        y = np.arange(batch) % 5
        models = {
            "none": _classifier(0.0, input_size, alpha),
            "l2": _classifier(1e-4, input_size, alpha),
            "l2_sp": _classifier(1e-2, input_size, alpha, kind="l2_sp"),
        }
        for model in models.values():
            for _ in range(5):  # warm-up: tracing and first-call costs
                model.train_on_batch(x, y)
        samples: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(steps):
            for name, model in models.items():
                start = time.perf_counter()
                model.train_on_batch(x, y)
                samples[name].append(time.perf_counter() - start)
        times = {name: statistics.median(values) for name, values in samples.items()}
        rows.append(
            {
                "model": f"MobileNetV2 a={alpha} {input_size}x{input_size}, batch {batch}",
                "penalty_terms": len(models["l2"].losses),
                "step_without_s": times["none"],
                "step_with_l2_s": times["l2"],
                "step_with_l2sp_s": times["l2_sp"],
                "overhead": times["l2"] / times["none"] - 1,
                "overhead_l2sp": times["l2_sp"] / times["none"] - 1,
            }
        )
    return rows


def data_headroom(batch: int = 32, epochs: int = 5) -> dict:
    """Examples/s the input pipeline delivers vs examples/s one train step consumes."""
    with tempfile.TemporaryDirectory() as tmp:
        train_file, _ = write_demo_examples(Path(tmp))
        dataset = make_dataset(
            train_file, (IMAGE_SIZE, IMAGE_SIZE), "mobilenet_v2", batch, training=True, augment=True
        )
        for _ in dataset:  # fill the cache, as the first epoch of fit() does
            pass
        count, start = 0, time.perf_counter()
        for _ in range(epochs):
            for images, _labels in dataset:
                count += int(images.shape[0])
        data_rate = count / (time.perf_counter() - start)
    step = penalty_overhead(steps=20, batch=batch, shapes=((32, 0.35),))[0]["step_with_l2_s"]
    train_rate = batch / step
    return {
        "data_examples_per_s": data_rate,
        "train_examples_per_s": train_rate,
        "headroom": data_rate / train_rate,
    }

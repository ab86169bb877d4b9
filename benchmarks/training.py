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

from components.image_ingestion.images import build_example
from components.image_ingestion.splits import assign_split
from components.regularizer import RegularizationSpec, regularize
from pipeline import trainer_module
from pipeline.config import PipelineConfig
from pipeline.demo_data import ensure_demo_data
from pipeline.source_backbone import IMAGE_SIZE
from pipeline.trainer_config import TrainerConfig
from pipeline.training_data import make_dataset

RATIO = PipelineConfig().train_eval_ratio


def demo_root() -> Path:
    root = Path(PipelineConfig().backbone.weights).parent
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


def _classifier(l2: float, input_size: int, alpha: float) -> keras.Model:
    base = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(input_size, input_size, 3), alpha=alpha
    )
    if l2:
        regularize(base, RegularizationSpec(l2=l2))
    else:
        for layer in base._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    config = TrainerConfig(num_classes=5, image_size=(input_size, input_size))
    model = trainer_module.build_classifier(base, config, mixed_precision=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def penalty_overhead(steps: int = 60, batch: int = 32) -> list[dict]:
    """Median train-step time with L2 on every kernel vs none, same architecture and batch.

    Steps of the two models alternate, so drift on the machine hits both alike.
    """
    rows = []
    for input_size, alpha in ((32, 0.35), (96, 1.0)):
        x = np.random.default_rng(0).random((batch, input_size, input_size, 3), "float32")
        y = np.arange(batch) % 5
        models = {l2: _classifier(l2, input_size, alpha) for l2 in (0.0, 1e-4)}
        for model in models.values():
            for _ in range(5):  # warm-up: tracing and first-call costs
                model.train_on_batch(x, y)
        samples: dict[float, list[float]] = {l2: [] for l2 in models}
        for _ in range(steps):
            for l2, model in models.items():
                start = time.perf_counter()
                model.train_on_batch(x, y)
                samples[l2].append(time.perf_counter() - start)
        times = {l2: statistics.median(values) for l2, values in samples.items()}
        rows.append(
            {
                "model": f"MobileNetV2 a={alpha} {input_size}x{input_size}, batch {batch}",
                "penalty_terms": len(models[1e-4].losses),
                "step_without_s": times[0.0],
                "step_with_l2_s": times[1e-4],
                "overhead": times[1e-4] / times[0.0] - 1,
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
    step = penalty_overhead(steps=20, batch=batch)[0]["step_with_l2_s"]
    train_rate = batch / step
    return {
        "data_examples_per_s": data_rate,
        "train_examples_per_s": train_rate,
        "headroom": data_rate / train_rate,
    }

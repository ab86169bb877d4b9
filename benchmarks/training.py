"""Training-side numbers: penalty overhead, tf.data headroom on the demo task, and the
Trainer's input pipeline and fit loop against bare TensorFlow on generated 224x224 JPEGs.

What regularization buys in accuracy is measured by ``benchmarks.transfer_study``.

Everything runs in one process (the demo data is built by `make run` or on first use here),
so the numbers are ratios within one run on one machine.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
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
from backbone_regularizer.pipeline.trainer.data import FEATURES, IMAGE_KEY, LABEL_KEY, make_dataset
from backbone_regularizer.pipeline.trainer.preprocessing import preprocess_fn
from backbone_regularizer.pipeline.trainer.selection import BestEpoch

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
        for _ in dataset:  # warm-up: tracing and first-call costs (nothing is cached)
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


def _jpeg(rng: np.random.Generator, label: int, size: int) -> bytes:
    """A smooth colour field (tinted by ``label``) plus noise: ~17 KB at 224x224, quality 90."""
    from PIL import Image

    coarse = rng.random((max(size // 16, 2), max(size // 16, 2), 3)) * 120 + label * 25
    field = Image.fromarray(coarse.clip(0, 255).astype("uint8")).resize((size, size), Image.BICUBIC)
    pixels = np.asarray(field, "float32") + rng.normal(0, 8, (size, size, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype("uint8")).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_jpeg_shards(
    folder: Path, count: int, shards: int, size: int = 224, classes: int = 5, seed: int = 0
) -> list[str]:
    """``count`` generated JPEG tf.Examples as GZIP TFRecords, record i in shard i % shards."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(folder / f"data-{i:05d}-of-{shards:05d}.gz") for i in range(shards)]
    writers = [tf.io.TFRecordWriter(path, options="GZIP") for path in paths]
    for index in range(count):
        label = int(rng.integers(classes))
        feature = {
            IMAGE_KEY: tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[_jpeg(rng, label, size)])
            ),
            LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writers[index % shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return paths


def bare_dataset(
    files: list[str], size: int, batch: int, preprocess: str | None = None
) -> tf.data.Dataset:
    """The physical floor: one map of parse + ``decode_jpeg`` + resize (AUTOTUNE), batched;
    with ``preprocess`` (a keras.applications module) also that, to feed a bare ``fit``."""
    scale = preprocess_fn(preprocess) if preprocess else None

    def decode(record):
        example = tf.io.parse_single_example(record, FEATURES)
        image = tf.image.resize(tf.io.decode_jpeg(example[IMAGE_KEY], channels=3), (size, size))
        return (scale(image) if scale else image), example[LABEL_KEY]

    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    dataset = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _pass(dataset: tf.data.Dataset) -> tuple[float, float]:
    """One full pass: (images per wall-clock second, images per CPU-second of this process)."""
    count, wall, cpu = 0, time.perf_counter(), time.process_time()
    for _, labels in dataset:
        count += int(labels.shape[0])
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _medians(samples: dict[str, list[tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    return {
        name: (statistics.median(s[0] for s in pairs), statistics.median(s[1] for s in pairs))
        for name, pairs in samples.items()
    }


def input_throughput(files: list[str], size: int = 224, batch: int = 32, repeats: int = 7) -> dict:
    """Decoded images of the Trainer's ``make_dataset`` (training, defaults: augmentation, no
    cache) vs the bare floor over the same records; passes alternate, medians of ``repeats``
    after one warm-up pass each.

    Per core: images per CPU-second of the process (user + system time of all its threads),
    what a pass costs whatever else runs on the machine; wall-clock images/s are reported
    too, but on a shared machine a pass that loses a core runs at half speed.
    """
    pipelines = {
        "floor": bare_dataset(files, size, batch),
        "trainer": make_dataset(
            files, (size, size), "mobilenet_v2", batch, training=True, augment=True
        ),
        "trainer_no_augment": make_dataset(
            files, (size, size), "mobilenet_v2", batch, training=True
        ),
    }
    for dataset in pipelines.values():
        _pass(dataset)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pipelines}
    for _ in range(repeats):
        for name, dataset in pipelines.items():
            samples[name].append(_pass(dataset))
    medians = _medians(samples)
    floor_wall, floor_cpu = medians["floor"]
    return {
        "images": sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP")),
        "shards": len(files),
        "size": size,
        "cores": cores(),
        **{f"{name}_images_per_cpu_s": cpu for name, (_, cpu) in medians.items()},
        **{f"{name}_images_per_s": wall for name, (wall, _) in medians.items()},
        "ratio": medians["trainer"][1] / floor_cpu,
        "ratio_no_augment": medians["trainer_no_augment"][1] / floor_cpu,
        "wall_ratio": medians["trainer"][0] / floor_wall,
        "wall_ratio_no_augment": medians["trainer_no_augment"][0] / floor_wall,
        "passes": samples,  # (wall, cpu) of every pass: a shared machine shows in the spread
    }


class _EpochTimes(keras.callbacks.Callback):
    """(wall seconds, CPU seconds) of every epoch."""

    def __init__(self):
        super().__init__()
        self.times: list[tuple[float, float]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        wall, cpu = self._start
        self.times.append((time.perf_counter() - wall, time.process_time() - cpu))


def training_throughput(
    files: list[str],
    size: int = 224,
    batch: int = 32,
    alpha: float = 0.35,
    repeats: int = 3,
    backbone: Callable[[], keras.Model] | None = None,
) -> dict:
    """Training images of the Trainer's fit loop (its compile settings, metrics and
    callbacks, on ``make_dataset`` with the default augmentation) vs a bare ``model.fit``
    (Adam, cross-entropy, ``bare_dataset`` + preprocessing), same records, architecture and
    batch; no validation in either.

    Both models are compiled once and traced by one warm-up epoch; then single epochs
    alternate (``repeats`` each), every one from the same starting weights (a random
    backbone's speed changes as its weights do). Medians of wall-clock and of CPU time.
    ``backbone``: a builder instead of MobileNetV2 (tests).
    """
    config = TrainerConfig(num_classes=5, image_size=(size, size), batch_size=batch)

    def mobilenet() -> keras.Model:
        return keras.applications.MobileNetV2(
            weights=None, include_top=False, input_shape=(size, size, 3), alpha=alpha
        )

    def classifier() -> keras.Model:  # the demo's regularization, anchored at its own weights
        base = (backbone or mobilenet)()
        regularize(base, RegularizationSpec(l2_sp=0.01, freeze_batchnorm=True))
        return trainer_module.build_classifier(base, config, mixed_precision=False)

    trainer, bare = classifier(), classifier()
    start = trainer.get_weights()
    trainer_module._compile(trainer, config, False, config.learning_rate)
    bare.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
    )
    train_ds = make_dataset(files, (size, size), "mobilenet_v2", batch, training=True, augment=True)
    bare_ds = bare_dataset(files, size, batch, preprocess="mobilenet_v2")
    samples: dict[str, list[tuple[float, float]]] = {"trainer": [], "bare": []}
    with tempfile.TemporaryDirectory() as logs:
        keeper = BestEpoch("crossentropy", np.inf, start, config.patience)
        callbacks = [keeper.phase("fine-tuning", stopping=False)]
        callbacks.append(keras.callbacks.TensorBoard(log_dir=logs))
        runs = {
            "trainer": lambda timer: trainer.fit(
                train_ds, epochs=1, callbacks=[timer, *callbacks], verbose=0
            ),
            "bare": lambda timer: bare.fit(bare_ds, epochs=1, callbacks=[timer], verbose=0),
        }
        models = {"trainer": trainer, "bare": bare}
        for index in range(1 + repeats):
            for name in ("trainer", "bare") if index % 2 else ("bare", "trainer"):
                models[name].set_weights(start)
                timer = _EpochTimes()
                runs[name](timer)
                if index:  # the first epoch of each traces its functions
                    samples[name].extend(timer.times)
    images = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    medians = _medians({k: [(images / w, images / c) for w, c in v] for k, v in samples.items()})
    return {
        "model": f"{trainer.layers[1].name} {size}x{size}, batch {batch}"
        if backbone
        else f"MobileNetV2 a={alpha} {size}x{size}, batch {batch}",
        "images": images,
        "trainer_images_per_s": medians["trainer"][0],
        "bare_images_per_s": medians["bare"][0],
        "trainer_images_per_cpu_s": medians["trainer"][1],
        "bare_images_per_cpu_s": medians["bare"][1],
        "ratio": medians["trainer"][1] / medians["bare"][1],
        "wall_ratio": medians["trainer"][0] / medians["bare"][0],
    }


def scale_inputs(images: int = 2048, shards: int = 8) -> tuple[dict, dict]:
    """``input_throughput`` and ``training_throughput`` on ``images`` generated 224x224 JPEGs
    (5 classes) in ``shards`` shards; the fit on the first 640 of them (20 batches)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = write_jpeg_shards(Path(tmp) / "all", images, shards)
        inputs = input_throughput(files)
        fit_files = write_jpeg_shards(Path(tmp) / "fit", 640, shards)
        fit = training_throughput(fit_files)
    return inputs, fit

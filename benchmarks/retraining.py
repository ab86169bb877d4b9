"""Scheduled retraining on drifting spans: the newest span only vs a window of 3 vs all spans.

    python -m benchmarks.retraining                                   # 5 spans, 3 seeds
    python -m benchmarks.retraining --seeds 1 --per-class 6 --epochs 1  # smoke

A simulated schedule on the demo's target task (digits 5-9 of scikit-learn's digits, 32x32):
``SPANS`` spans arrive one after the other, each rotated ``ROTATION_STEP`` degrees more than the
one before (drift), and span ``MISSING_SPAN`` arrives without ``MISSING_CLASS``. After each span,
each strategy retrains from the demo's pre-trained backbone, as the pipeline does:

* the span folders are written to disk and ``plan_ingestion`` (ImageExampleGen's own logic)
  picks the training and validation images for ``span_window`` 1, 3 or "all" and maps their
  folders through the label vocabulary of the first span;
* the backbone gets the demo's regularization and is fine-tuned by the Trainer's ``train`` with
  the demo's recipe (``PipelineConfig`` defaults), except ``--epochs``.

Every model is scored on one fixed holdout (``HOLDOUT_PER_CLASS`` images per class, never in a
span), rendered at every span's rotation: accuracy at the newest span's rotation (today's data),
over all rotations (what was learnt so far is kept) and on the missing class. Seeds change which
images fall in which span and the training seed; means with 95% t-intervals over seeds.
Windows that hold the same spans (e.g. window 3 and all up to span 3) share one training.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from backbone_regularizer.components.image_ingestion import splits
from backbone_regularizer.components.image_ingestion.images import build_example
from backbone_regularizer.components.image_ingestion.labels import names
from backbone_regularizer.components.image_ingestion.plan import IngestionOptions, plan_ingestion
from backbone_regularizer.components.regularizer import regularize
from backbone_regularizer.pipeline.config import PipelineConfig
from backbone_regularizer.pipeline.demo import data as demo_data
from backbone_regularizer.pipeline.trainer import module as trainer_module
from backbone_regularizer.pipeline.trainer.config import TrainerConfig
from backbone_regularizer.pipeline.trainer.data import make_dataset
from benchmarks import machine
from benchmarks.transfer_study import demo_backbone_path, t_interval

HERE = Path(__file__).parent
SPANS = 5
ROTATION_STEP = 10.0  # degrees of drift per span
MISSING_SPAN = 3
MISSING_CLASS = "digit_5"
HOLDOUT_PER_CLASS = 20
PER_CLASS = 30  # images per class and span (digits has ~174-182 per target class)
EPOCHS = 10
STRATEGIES = {"newest span": 1, "window of 3": 3, "all spans": "all"}
SPAN_PATTERN = "span-{SPAN}"
METRICS = ("current", "all_rotations", "missing_class")
# The first span's folders, sorted: the vocabulary every span and the holdout are labelled with.
CLASSES = [f"digit_{d}" for d in demo_data.TARGET_DIGITS]


def rotation(span: int) -> float:
    return (span - 1) * ROTATION_STEP


def png(image8x8: np.ndarray, degrees: float) -> bytes:
    """A digit as the demo renders it (32x32 RGB), rotated by ``degrees``, as PNG bytes."""
    from PIL import Image

    image = Image.fromarray(demo_data._to_rgb(image8x8)).rotate(degrees, Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def assign(labels: np.ndarray, per_class: int, seed: int, spans: int = SPANS):
    """``(holdout, by_span)``: digit -> image indices. The holdout is the same for every seed
    (a fixed permutation); the spans draw from the rest with ``seed``.

    Raises:
        ValueError: not enough images of a digit for the holdout and ``spans * per_class``.
    """
    fixed, rng = np.random.default_rng(12345), np.random.default_rng(seed)
    holdout, by_span = {}, {span: {} for span in range(1, spans + 1)}
    for digit in demo_data.TARGET_DIGITS:
        indices = fixed.permutation(np.flatnonzero(labels == digit))
        holdout[digit] = sorted(indices[:HOLDOUT_PER_CLASS].tolist())
        rest = rng.permutation(indices[HOLDOUT_PER_CLASS:])
        if len(rest) < spans * per_class:
            raise ValueError(
                f"Expected {spans * per_class} images of digit {digit} beside the holdout. "
                f"Received: {len(rest)}; lower --per-class."
            )
        for span in by_span:
            start = (span - 1) * per_class
            by_span[span][digit] = sorted(rest[start : start + per_class].tolist())
    return holdout, by_span


def write_span(
    images_root: Path, span: int, chosen: dict[int, list[int]], images, missing_span: int
) -> None:
    """``span-<span>/digit_<d>/<index>.png`` rotated for the span; the missing class left out
    of ``missing_span``."""
    for digit, indices in chosen.items():
        name = f"digit_{digit}"
        if span == missing_span and name == MISSING_CLASS:
            continue
        folder = images_root / f"span-{span}" / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in indices:
            (folder / f"{index:04d}.png").write_bytes(png(images[index], rotation(span)))


def write_records(path: Path, examples) -> str:
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for example in examples:
            writer.write(example.SerializeToString())
    return str(path)


def holdout_records(folder: Path, holdout, images, spans: int) -> tuple[str, np.ndarray]:
    """One TFRecord file of the holdout rendered at every span's rotation, and the span (the
    rotation) of each record, in file order."""
    examples, levels = [], []
    for span in range(1, spans + 1):
        for k, d in enumerate(demo_data.TARGET_DIGITS):  # k: the index of digit_<d>
            for i in holdout[d]:
                name = f"digit_{d}"
                data = png(images[i], rotation(span))
                examples.append(build_example(data, k, name, f"{name}/{i:04d}.png", span))
                levels.append(span)
    return write_records(folder / "holdout.gz", examples), np.array(levels)


def training_files(images_root: Path, span: int, window, ratio, folder: Path):
    """The window's train/eval TFRecords as ImageExampleGen would write them, and its plan."""
    plan = plan_ingestion(
        str(images_root),
        f"span-{span}/*/*",
        IngestionOptions(SPAN_PATTERN, span_window=window),
        ratio,
    )
    by_split = {splits.TRAIN_SPLIT: [], splits.EVAL_SPLIT: []}
    for image in plan.hashed.images:
        # Older spans hold train files only (the plan kept those), the newest both.
        split = splits.assign_split(image.filename, ratio)
        data = Path(image.path).read_bytes()
        label = plan.label_map[image.label_name]
        by_split[split].append(
            build_example(data, label, image.label_name, image.filename, image.span)
        )
    if names(plan.label_map) != CLASSES:
        raise RuntimeError(
            f"Expected the first span's vocabulary {CLASSES}. Received: {names(plan.label_map)}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return (
        write_records(folder / "train.gz", by_split[splits.TRAIN_SPLIT]),
        write_records(folder / "eval.gz", by_split[splits.EVAL_SPLIT]),
        plan,
    )


def accuracies(classifier, holdout, trainer: TrainerConfig, span: int) -> dict:
    """Holdout accuracy at the newest span's rotation, over all rotations, on the missing class.

    ``holdout``: ``holdout_records`` output (one file, one predict call).
    """
    path, levels = holdout
    dataset = make_dataset(path, trainer.image_size, trainer.preprocessing_module, 100, False)
    truth = np.concatenate([y.numpy() for _, y in dataset])
    correct = np.argmax(classifier.predict(dataset, verbose=0), axis=1) == truth
    return {
        "current": float(correct[levels == span].mean()),
        "all_rotations": float(correct.mean()),
        "missing_class": float(correct[truth == CLASSES.index(MISSING_CLASS)].mean()),
    }


def train_one(config: PipelineConfig, backbone: Path, files, plan, seed: int, epochs: int, run_dir):
    """The demo's regularization and recipe (``epochs`` changed) on ``files`` (train, eval)."""
    train_file, eval_file = files
    trainer = TrainerConfig.from_dict(
        {
            **config.trainer_config().to_dict(),
            "num_classes": None,
            "labels": names(plan.label_map),
            "epochs": epochs,
            "seed": seed,
        }
    )
    keras.utils.set_random_seed(seed)
    base = keras.saving.load_model(backbone, compile=False)
    report = regularize(base, config.regularization_spec()).to_dict()
    classifier, summary = trainer_module.train(
        base,
        report,
        trainer,
        train_file,
        eval_file,
        run_dir,
        tf.distribute.get_strategy(),
        False,
    )
    return classifier, summary, trainer


def study(
    seeds,
    spans: int,
    per_class: int,
    epochs: int,
    backbone: Path | None = None,
    missing_span: int = MISSING_SPAN,
    log=print,
):
    """Every (seed, span, strategy) row; trainings on the same spans are shared."""
    backbone = backbone or demo_backbone_path()
    config = PipelineConfig()
    images, labels = demo_data._digits()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            holdout, by_span = assign(labels, per_class, seed, spans)
            folder = Path(tmp) / f"seed-{seed}"
            images_root = folder / "images"
            folder.mkdir(parents=True)
            holdout_files = holdout_records(folder, holdout, images, spans)
            trained: dict[tuple[int, ...], dict] = {}
            for span in range(1, spans + 1):
                write_span(images_root, span, by_span[span], images, missing_span)
                for strategy, window in STRATEGIES.items():
                    run_dir = folder / f"span-{span}-{window}"
                    train_file, eval_file, plan = training_files(
                        images_root, span, window, config.train_eval_ratio, run_dir
                    )
                    if plan.spans not in trained:
                        start = time.perf_counter()
                        classifier, summary, trainer = train_one(
                            config, backbone, (train_file, eval_file), plan, seed, epochs, run_dir
                        )
                        trained[plan.spans] = {
                            **accuracies(classifier, holdout_files, trainer, span),
                            "train_examples": plan_counts(plan, splits.TRAIN_SPLIT),
                            "epochs_run": summary["epochs_run"],
                            "seconds": time.perf_counter() - start,
                        }
                        keras.backend.clear_session()
                    row = {
                        "seed": seed,
                        "span": span,
                        "strategy": strategy,
                        "spans": list(plan.spans),
                        **trained[plan.spans],
                    }
                    rows.append(row)
                    log(json.dumps(row))
    return rows


def plan_counts(plan, split: str) -> int:
    return sum(counts.get(split, 0) for counts in plan.class_counts.values())


def summarize(rows: list[dict]) -> list[dict]:
    """Per span and strategy: each metric's mean and 95% interval over seeds."""
    out = []
    for span in sorted({r["span"] for r in rows}):
        for strategy in STRATEGIES:
            mine = [r for r in rows if r["span"] == span and r["strategy"] == strategy]
            if mine:
                entry = {"span": span, "strategy": strategy, "spans": mine[0]["spans"]}
                for metric in METRICS:
                    entry[metric] = t_interval([r[metric] for r in mine])
                out.append(entry)
    return out


def _ci(entry: dict) -> str:
    if math.isnan(entry["low"]):
        return f"{entry['mean']:.3f}"
    return f"{entry['mean']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def markdown(summary: list[dict], rows: list[dict], header: str, missing_span: int) -> str:
    lines = [header, ""]
    titles = {
        "current": "holdout at the span's rotation",
        "all_rotations": "holdout, all rotations",
        "missing_class": f"{MISSING_CLASS}, all rotations",
    }
    for metric, title in titles.items():
        lines += [f"**{title}** (mean [95% CI] over seeds)", ""]
        lines.append("| span (rotation) | " + " | ".join(STRATEGIES) + " |")
        lines.append("|---" * (len(STRATEGIES) + 1) + "|")
        for span in sorted({e["span"] for e in summary}):
            cells = [
                _ci(e[metric])
                for s in STRATEGIES
                for e in summary
                if (e["span"], e["strategy"]) == (span, s)
            ]
            note = f" no {MISSING_CLASS}" if span == missing_span else ""
            lines.append(f"| {span} ({rotation(span):g} deg){note} | " + " | ".join(cells) + " |")
        lines.append("")
    trainings = {(r["seed"], tuple(r["spans"])): r for r in rows}
    seconds = sum(r["seconds"] for r in trainings.values())
    lines.append(
        f"{len(trainings)} trainings ({len(rows)} rows: windows holding the same spans share "
        f"one), {seconds / 60:.1f} min of training in all."
    )
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], path: Path, missing_span: int) -> None:
    """Accuracy over time per strategy, one panel per metric, means with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 3.8), squeeze=False)
    titles = (
        "holdout at the newest span's rotation",
        "holdout at every rotation (later ones too)",
        f"{MISSING_CLASS} in the holdout, every rotation",
    )
    for ax, metric, title in zip(axes[0], METRICS, titles, strict=True):
        for offset, strategy in zip((-0.08, 0.0, 0.08), STRATEGIES, strict=True):
            entries = [e for e in summary if e["strategy"] == strategy]
            xs = np.array([e["span"] for e in entries]) + offset
            means = [e[metric]["mean"] for e in entries]
            low = [e[metric]["mean"] - e[metric]["low"] for e in entries]
            high = [e[metric]["high"] - e[metric]["mean"] for e in entries]
            yerr = None if any(math.isnan(v) for v in low) else [low, high]
            ax.errorbar(xs, means, yerr=yerr, fmt="o-", capsize=3, label=strategy)
        ax.axvline(missing_span, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xlabel(f"span (rotation +{ROTATION_STEP:g} deg per span)")
        ax.set_title(title)
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--spans", type=int, default=SPANS)
    parser.add_argument("--per-class", type=int, default=PER_CLASS)
    parser.add_argument(
        "--missing-span", type=int, default=MISSING_SPAN, help=f"span without {MISSING_CLASS}"
    )
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the results")
    parser.add_argument("--backbone", type=Path, help=".keras backbone (default: the demo's)")
    args = parser.parse_args(argv)
    if not 2 <= args.missing_span <= args.spans:
        parser.error("--missing-span must be a span after the first (which fixes the labels)")
    started = time.perf_counter()
    rows = study(
        range(args.seeds),
        args.spans,
        args.per_class,
        args.epochs,
        args.backbone,
        args.missing_span,
    )
    summary = summarize(rows)
    wall = time.perf_counter() - started
    header = (
        f"Measured on: {machine.describe()} (shared with other jobs: compare strategies, not "
        f"seconds). {args.seeds} seeds x {args.spans} spans x {len(STRATEGIES)} strategies; "
        f"{args.per_class} images per class and span (hash split "
        f"{PipelineConfig().train_eval_ratio} train:eval), rotation +{ROTATION_STEP:g} deg per "
        f"span, span {args.missing_span} without "
        f"{MISSING_CLASS}; the demo's recipe with {args.epochs} epochs; holdout: "
        f"{HOLDOUT_PER_CLASS} fixed images per class at every span's rotation. Wall time "
        f"{wall / 60:.1f} min."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(summary, rows, header, args.missing_span)
    (args.out / "retraining.md").write_text(text)
    plot(summary, args.out / "retraining.png", args.missing_span)
    result = {
        "machine": machine.describe(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "wall_s": wall,
        "rows": rows,
        "summary": summary,
    }
    (args.out / "retraining.json").write_text(json.dumps(result, indent=2))
    print(text)
    return result


if __name__ == "__main__":
    main()

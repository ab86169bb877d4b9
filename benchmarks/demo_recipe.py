"""The demo's recipe over seeds on the demo's own split: is fine-tuning worth it, is it blessed?

    python -m benchmarks.demo_recipe                       # after `make run`: 10 seeds
    python -m benchmarks.demo_recipe --seeds 3 --epochs 2  # smoke

Reads the train/eval split of the latest ``ImageExampleGen`` run under the demo root (the
Examples artifact `make run` wrote: span 1, hash split 1:2) and the demo's source backbone,
regularizes it with the demo's ``regularization`` and trains it with the demo's
``TrainerConfig`` (``backbone_regularizer.pipeline.config.PipelineConfig`` defaults), changing only
the seed. Per
seed: the fine-tuned accuracy on the eval split (best epoch restored, as exported), the two
baselines on the same split, and whether ``min_accuracy`` blesses it. Only the seed changes
(shuffling, dropout, head init); the split and the backbone are fixed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from backbone_regularizer.components.regularizer import regularize
from backbone_regularizer.pipeline.config import DEMO_BACKBONE, PipelineConfig
from backbone_regularizer.pipeline.demo import data as demo_data
from backbone_regularizer.pipeline.trainer import module as trainer_module
from backbone_regularizer.pipeline.trainer.baselines import PIXELS, PROBE
from backbone_regularizer.pipeline.trainer.data import make_dataset
from benchmarks import machine
from benchmarks.transfer_study import t_interval

HERE = Path(__file__).parent


def latest_split(root: Path) -> tuple[str, str]:
    """``(train, eval)`` TFRecord patterns of the newest Examples artifact under ``root``."""
    examples = Path(root) / "pipeline" / "ImageExampleGen" / "examples"
    runs = sorted((p for p in examples.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
    if not runs:
        raise FileNotFoundError(
            f"Expected an ImageExampleGen output under {str(examples)!r} (run `make run` "
            "first). Received: none"
        )
    return str(runs[-1] / "Split-train" / "*.gz"), str(runs[-1] / "Split-eval" / "*.gz")


def run_seed(config: PipelineConfig, backbone: Path, train_files, eval_files, seed, tmp, **change):
    trainer = config.trainer_config()
    trainer = type(trainer).from_dict({**trainer.to_dict(), "seed": seed, **change})
    base = keras.saving.load_model(backbone, compile=False)
    report = regularize(base, config.regularization_spec()).to_dict()
    start = time.perf_counter()
    classifier, summary = trainer_module.train(
        base,
        report,
        trainer,
        train_files,
        eval_files,
        str(Path(tmp) / str(seed)),
        tf.distribute.get_strategy(),
        False,
    )
    eval_ds = make_dataset(
        eval_files,
        trainer.image_size,
        trainer.preprocessing_module,
        trainer.batch_size,
        training=False,
    )
    accuracy = float(classifier.evaluate(eval_ds, verbose=0, return_dict=True)["accuracy"])
    pixels = summary["baselines"][PIXELS]["eval_accuracy"]
    probe = summary["baselines"][PROBE]["eval_accuracy"]
    return {
        "seed": seed,
        "fine_tuned": accuracy,
        "pixels": pixels,
        "probe": probe,
        "epochs_run": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "train_examples": summary["baselines"][PIXELS]["train_examples"],
        "eval_examples": summary["baselines"][PIXELS]["eval_examples"],
        "blessed": accuracy >= config.min_accuracy,
        "beats_probe": accuracy >= probe,
        "beats_pixels": accuracy >= pixels,
        "seconds": time.perf_counter() - start,
    }


def markdown(rows: list[dict], config: PipelineConfig, header: str) -> str:
    def stat(key):
        values = [r[key] for r in rows]
        ci = t_interval(values)
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return (
            f"mean {ci['mean']:.3f} [95% CI {ci['low']:.3f}, {ci['high']:.3f}], sd "
            f"{spread:.3f}, min {min(values):.3f}, max {max(values):.3f}"
        )

    n = len(rows)
    lines = [header, "", "| seed | fine-tuned | pixel LR | probe | epochs (best) | blessed |"]
    lines.append("|---|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['fine_tuned']:.3f} | {r['pixels']:.3f} | {r['probe']:.3f} | "
            f"{r['epochs_run']} ({r['best_epoch']}) | {r['blessed']} |"
        )
    lines += [
        "",
        f"- fine-tuned: {stat('fine_tuned')}",
        f"- blessed (accuracy >= min_accuracy {config.min_accuracy:g}): "
        f"{sum(r['blessed'] for r in rows)} of {n}",
        f"- fine-tuned >= linear probe: {sum(r['beats_probe'] for r in rows)} of {n}; "
        f">= pixel logistic regression: {sum(r['beats_pixels'] for r in rows)} of {n}; "
        f"all three: {sum(r['blessed'] and r['beats_probe'] and r['beats_pixels'] for r in rows)}"
        f" of {n}",
        f"- training time per seed: {statistics.fmean(r['seconds'] for r in rows):.0f} s",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--root", type=Path, default=Path("runs/demo"), help="demo run root")
    parser.add_argument("--backbone", type=Path, help=".keras backbone (default: the demo's)")
    parser.add_argument("--epochs", type=int, help="override the demo's epochs (smoke tests)")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the results")
    args = parser.parse_args(argv)
    config = PipelineConfig()
    train_files, eval_files = latest_split(args.root)
    backbone = args.backbone
    if backbone is None:
        folder = Path(DEMO_BACKBONE).parent
        demo_data.ensure_demo_data(folder)
        backbone = demo_data.backbone_model_path(folder)
    change = {} if args.epochs is None else {"epochs": args.epochs}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            rows.append(run_seed(config, backbone, train_files, eval_files, seed, tmp, **change))
            print(json.dumps(rows[-1]), flush=True)
    trainer = config.trainer_config()
    header = (
        f"Measured on: {machine.describe()}. The demo's split ({rows[0]['train_examples']} "
        f"train / {rows[0]['eval_examples']} eval), the demo's backbone and recipe "
        f"({json.dumps(config.regularization)}, "
        f"lr {trainer.learning_rate:g}, {args.epochs or trainer.epochs} epochs max, patience "
        f"{trainer.patience}, batch {trainer.batch_size}, head from the probe), seeds "
        f"0-{args.seeds - 1}."
    )
    text = markdown(rows, config, header)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_recipe.md").write_text(text)
    result = {"machine": machine.describe(), "rows": rows, "min_accuracy": config.min_accuracy}
    (args.out / "demo_recipe.json").write_text(json.dumps(result, indent=2))
    print(text)
    return result


if __name__ == "__main__":
    main()

"""What regularization buys when fine-tuning the demo's pre-trained backbone on few examples.

    python -m benchmarks.transfer_study                    # the full study
    python -m benchmarks.transfer_study --seeds 1 --sizes 5 --arms none --epochs 2   # smoke
    python -m benchmarks.transfer_study --sizes 5 --out /tmp/a &   # two processes, then
    python -m benchmarks.transfer_study --sizes 20 --out /tmp/b    # ... merged:
    python -m benchmarks.transfer_study --merge /tmp/{a,b}/transfer_study.json

Arms (same recipe and budget: the Trainer's ``train`` with the head initialized as the linear
probe, then ``epochs`` epochs of fine-tuning, no early stopping):

* ``none``: no penalty;
* ``l2``: ``alpha / 2 * sum(w**2)`` on every backbone kernel (Keras ``L2(alpha / 2)``);
* ``l2_sp``: ``alpha / 2 * sum((w - w0)**2)`` toward the pre-trained weights (Li et al. 2018);
* ``adamw``: decoupled weight decay on all kernels (Loshchilov & Hutter), no penalty;
* ``l2_2019``: the 2019 recipe's L2 (``benchmarks/legacy_2019.py``), which misses the depthwise
  kernels;

the L2, L2-SP and 2019 arms also put the paper's ``beta / 2 * sum(w**2)`` on the new head.
Each seed draws its own training images (``size`` per class from digits 5-9); the evaluation
images are one fixed set, disjoint from every training draw. Arms of one seed share the draw and
the head's initialization, so per-seed differences vs ``none`` are paired.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from backbone_regularizer.components.image_ingestion.images import build_example
from backbone_regularizer.components.regularizer import RegularizationSpec, regularize
from backbone_regularizer.pipeline.config import DEMO_BACKBONE
from backbone_regularizer.pipeline.demo import data as demo_data
from backbone_regularizer.pipeline.trainer import module as trainer_module
from backbone_regularizer.pipeline.trainer.baselines import PIXELS, PROBE
from backbone_regularizer.pipeline.trainer.config import TrainerConfig
from benchmarks import machine
from benchmarks.legacy_2019 import add_regularization_2019

HERE = Path(__file__).parent
ARMS = ("none", "l2", "l2_sp", "adamw", "l2_2019")
# The setting was chosen once, before the study ran, from the paper's (Li et al. 2018: alpha
# 0.1 on the backbone, beta 0.01 on the new head) and not tuned on its results. An earlier run
# at alpha 0.01, beta 0, lr 3e-4, 20 epochs moved the weights too little from w0 for any
# penalty to matter (README).
ALPHA = 0.1  # L2 and L2-SP strength on the backbone
BETA = 0.01  # the paper's beta: L2 on the new head, in the L2 and L2-SP arms
WEIGHT_DECAY = 0.1  # AdamW's decay factor (per step: lr * weight_decay * w)
EVAL_PER_CLASS = 30
LEARNING_RATE = 1e-3
EPOCHS = 30
BATCH_SIZE = 25  # divides every split: no partial batch, no second trace
METRICS = ("final_val_accuracy", "best_val_accuracy", "final_gap")


def target_pool() -> tuple[list[bytes], np.ndarray]:
    """Every digits 5-9 image as 32x32 PNG bytes, labels 0-4."""
    import io

    from PIL import Image

    images, labels = demo_data._digits()
    mask = np.isin(labels, demo_data.TARGET_DIGITS)
    encoded = []
    for image in images[mask]:
        buffer = io.BytesIO()
        Image.fromarray(demo_data._to_rgb(image)).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded, labels[mask] - min(demo_data.TARGET_DIGITS)


def draw(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed evaluation indices (seed-independent) and this seed's training indices."""
    fixed = np.random.default_rng(12345)
    eval_idx, rest = [], []
    for c in np.unique(labels):
        idx = fixed.permutation(np.flatnonzero(labels == c))
        eval_idx.extend(idx[:EVAL_PER_CLASS])
        rest.append(idx[EVAL_PER_CLASS:])
    rng = np.random.default_rng(seed)
    train_idx = [i for idx in rest for i in rng.permutation(idx)[:per_class]]
    return np.array(sorted(eval_idx)), np.array(sorted(train_idx))


def write_records(path: Path, encoded: list[bytes], labels: np.ndarray, indices) -> str:
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for i in indices:
            name = f"digit_{int(labels[i])}/{int(i):04d}.png"
            example = build_example(encoded[i], int(labels[i]), f"digit_{int(labels[i])}", name)
            writer.write(example.SerializeToString())
    return str(path)


def demo_backbone_path() -> Path:
    """The demo's pre-trained source backbone (built on first use, as `make run` does)."""
    root = Path(DEMO_BACKBONE).parent
    demo_data.ensure_demo_data(root)
    return demo_data.backbone_model_path(root)


def prepare(
    arm: str,
    base: keras.Model,
    alpha: float = ALPHA,
    beta: float = BETA,
    decay: float = WEIGHT_DECAY,
) -> tuple[keras.Model, dict, dict]:
    """Apply ``arm`` to a fresh backbone; return it, a report for ``train`` and config changes."""
    none = {"regularized": [], "regularizer": {"config": {}}, "regularizer_summary": "none"}
    if arm == "none":
        return base, none, {}
    if arm == "adamw":
        return base, none, {"weight_decay": decay}
    if arm == "l2":
        report = regularize(base, RegularizationSpec(l2=alpha / 2)).to_dict()
        return base, report, {"head_beta": beta}
    if arm == "l2_sp":
        report = regularize(base, RegularizationSpec(l2_sp=alpha)).to_dict()
        return base, report, {"head_beta": beta}
    if arm == "l2_2019":
        base = add_regularization_2019(base, keras.regularizers.L2(alpha / 2))
        summary = f"L2(l2={alpha / 2:g}), 2019 recipe"
        return base, {**none, "regularizer_summary": summary}, {"head_beta": beta}
    raise ValueError(f"Expected an arm among {ARMS}. Received: arm={arm!r}")


def run_one(
    arm, backbone, train_file, eval_file, seed, epochs, run_dir, strengths=None, **recipe
) -> dict:
    keras.utils.set_random_seed(seed)
    loaded = keras.saving.load_model(backbone, compile=False)
    base, report, changes = prepare(arm, loaded, **(strengths or {}))
    config = TrainerConfig(
        num_classes=5,
        epochs=epochs,
        patience=epochs,
        batch_size=BATCH_SIZE,
        seed=seed,
        **{**recipe, **changes},
    )
    start = time.perf_counter()
    _, summary = trainer_module.train(
        base,
        report,
        config,
        train_file,
        eval_file,
        run_dir,
        tf.distribute.get_strategy(),
        False,
    )
    history = summary["history"]
    return {
        "arm": arm,
        "seed": seed,
        "penalty_terms": summary["penalty_terms_in_loss"],
        "final_val_accuracy": history["val_accuracy"][-1],
        "best_val_accuracy": max(history["val_accuracy"]),
        "final_gap": history["accuracy"][-1] - history["val_accuracy"][-1],
        "pixels": summary["baselines"][PIXELS]["eval_accuracy"],
        "probe": summary["baselines"][PROBE]["eval_accuracy"],
        "seconds": time.perf_counter() - start,
    }


def study(
    seeds,
    sizes,
    arms,
    epochs,
    backbone: Path | None = None,
    log=print,
    strengths: dict | None = None,
    **recipe,
) -> list[dict]:
    """Every (size, seed, arm) run; ``backbone`` is a ``.keras`` file (default: the demo's).

    ``strengths``: ``alpha``, ``beta``, ``decay`` for ``prepare`` (default: the module's).
    ``recipe``: TrainerConfig settings for every arm (e.g. ``learning_rate``, ``augment``).
    """
    backbone = backbone or demo_backbone_path()
    encoded, labels = target_pool()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for seed in seeds:
                eval_idx, train_idx = draw(labels, size, seed)
                folder = Path(tmp) / f"{size}-{seed}"
                folder.mkdir()
                train_file = write_records(folder / "train.gz", encoded, labels, train_idx)
                eval_file = write_records(folder / "eval.gz", encoded, labels, eval_idx)
                for arm in arms:
                    row = run_one(
                        arm,
                        backbone,
                        train_file,
                        eval_file,
                        seed,
                        epochs,
                        str(folder / arm),
                        strengths,
                        **recipe,
                    )
                    row.update(per_class=size, train_examples=len(train_idx))
                    row["eval_examples"] = len(eval_idx)
                    rows.append(row)
                    log(json.dumps(row))
    return rows


def t_interval(values: list[float]) -> dict:
    """Mean and 95% confidence interval (Student's t) of ``values``."""
    from scipy import stats

    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": n}
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def summarize(rows: list[dict]) -> list[dict]:
    """Per data size and arm: each metric's mean and CI, and paired differences vs ``none``."""
    out = []
    for size in sorted({r["per_class"] for r in rows}):
        at_size = [r for r in rows if r["per_class"] == size]
        by_seed = {(r["arm"], r["seed"]): r for r in at_size}
        for arm in [a for a in ARMS if any(r["arm"] == a for r in at_size)]:
            mine = [r for r in at_size if r["arm"] == arm]
            entry = {"per_class": size, "arm": arm}
            for metric in METRICS:
                entry[metric] = t_interval([r[metric] for r in mine])
                paired = [
                    r[metric] - by_seed[("none", r["seed"])][metric]
                    for r in mine
                    if ("none", r["seed"]) in by_seed
                ]
                if arm != "none" and paired:
                    entry[f"{metric}_vs_none"] = t_interval(paired)
            if arm == "l2_sp":  # the paper's comparison: L2-SP against plain L2
                for metric in METRICS:
                    paired = [
                        r[metric] - by_seed[("l2", r["seed"])][metric]
                        for r in mine
                        if ("l2", r["seed"]) in by_seed
                    ]
                    if paired:
                        entry[f"{metric}_vs_l2"] = t_interval(paired)
            entry["pixels"] = t_interval([r["pixels"] for r in mine])
            entry["probe"] = t_interval([r["probe"] for r in mine])
            out.append(entry)
    return out


def _ci(entry: dict) -> str:
    if math.isnan(entry["low"]):
        return f"{entry['mean']:.3f}"
    return f"{entry['mean']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def _diff(entry: dict | None) -> str:
    if entry is None:
        return "-"
    if math.isnan(entry["low"]):
        return f"{entry['mean']:+.3f}"
    return f"{entry['mean']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}]"


def markdown(summary: list[dict], rows: list[dict], header: str) -> str:
    lines = [header, ""]
    lines.append(
        "| per class | arm | final val acc | best val acc | final train-val gap | "
        "final vs none (paired) | best vs none (paired) |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for e in summary:
        lines.append(
            f"| {e['per_class']} | {e['arm']} | {_ci(e['final_val_accuracy'])} | "
            f"{_ci(e['best_val_accuracy'])} | {_ci(e['final_gap'])} | "
            f"{_diff(e.get('final_val_accuracy_vs_none'))} | "
            f"{_diff(e.get('best_val_accuracy_vs_none'))} |"
        )
    lines += ["", "L2-SP minus L2, paired per seed (the paper's comparison):", ""]
    for e in summary:
        if e["arm"] == "l2_sp" and "final_val_accuracy_vs_l2" in e:
            lines.append(
                f"- {e['per_class']} per class: final {_diff(e['final_val_accuracy_vs_l2'])}, "
                f"best {_diff(e['best_val_accuracy_vs_l2'])}"
            )
    lines += ["", "Baselines on the same draws (mean [95% CI] over seeds):", ""]
    for size in sorted({e["per_class"] for e in summary}):
        first = next(e for e in summary if e["per_class"] == size)
        lines.append(
            f"- {size} per class: pixel logistic regression {_ci(first['pixels'])}, "
            f"linear probe {_ci(first['probe'])}"
        )
    seconds = sum(r["seconds"] for r in rows)
    lines += ["", f"{len(rows)} fine-tuning runs, {seconds / 60:.1f} min of training in all."]
    return "\n".join(lines) + "\n"


def _errorbar(ax, xs, intervals, **kwargs) -> None:
    means = [d["mean"] for d in intervals]
    low = [d["mean"] - d["low"] for d in intervals]
    high = [d["high"] - d["mean"] for d in intervals]
    ax.errorbar(xs, means, yerr=[low, high], fmt="o", capsize=3, **kwargs)


def plot(summary: list[dict], path: Path) -> None:
    """Top: final/best val accuracy per arm beside the baselines. Bottom: paired differences vs
    no penalty. Means with 95% intervals; one column per data size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nan = {"mean": math.nan, "low": math.nan, "high": math.nan}
    sizes = sorted({e["per_class"] for e in summary})
    fig, axes = plt.subplots(2, len(sizes), figsize=(5 * len(sizes), 7), squeeze=False)
    for column, size in enumerate(sizes):
        top, bottom = axes[0][column], axes[1][column]
        entries = [e for e in summary if e["per_class"] == size]
        xs = np.arange(len(entries))
        for offset, metric in ((-0.15, "final_val_accuracy"), (0.15, "best_val_accuracy")):
            label = metric.split("_")[0]
            _errorbar(top, xs + offset, [e[metric] for e in entries], label=label)
            others = [e for e in entries if e["arm"] != "none"]
            diffs = [e.get(f"{metric}_vs_none", nan) for e in others]
            _errorbar(bottom, np.arange(len(others)) + offset, diffs, label=label)
        for key, style in (("pixels", "--"), ("probe", ":")):
            top.axhline(entries[0][key]["mean"], color="grey", linestyle=style, label=key)
        top.set_xticks(xs, [e["arm"] for e in entries])
        top.set_title(f"{size} training images per class")
        top.set_ylabel("val accuracy")
        top.legend(fontsize=8)
        bottom.axhline(0, color="grey", linewidth=0.8)
        bottom.set_xticks(
            range(len(entries) - 1), [e["arm"] for e in entries if e["arm"] != "none"]
        )
        bottom.set_ylabel("minus no penalty (paired)")
        bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0, help="Seeds first..first+seeds-1.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the results")
    parser.add_argument("--backbone", type=Path, help=".keras backbone (default: the demo's)")
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    parser.add_argument("--alpha", type=float, default=ALPHA, help="L2 and L2-SP strength")
    parser.add_argument("--beta", type=float, default=BETA, help="head L2 (L2, L2-SP, 2019 arms)")
    parser.add_argument("--decay", type=float, default=WEIGHT_DECAY, help="AdamW decay")
    parser.add_argument("--augment", action="store_true", help="Train with augmentation.")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="Summarize the rows of these transfer_study.json files instead of training "
        "(e.g. the two data sizes run as two processes).",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
        rows = [row for part in parts for row in part["rows"]]
        args = argparse.Namespace(**{**parts[0]["settings"], "out": args.out})
        args.sizes = sorted({r["per_class"] for r in rows})
        args.backbone = None if args.backbone == "None" else args.backbone
    else:
        rows = study(
            range(args.first_seed, args.first_seed + args.seeds),
            args.sizes,
            args.arms,
            args.epochs,
            args.backbone,
            strengths={"alpha": args.alpha, "beta": args.beta, "decay": args.decay},
            learning_rate=args.learning_rate,
            augment=args.augment,
        )
    summary = summarize(rows)
    header = (
        f"Measured on: {machine.describe()}. "
        + ", ".join(
            f"{len({r['seed'] for r in rows if r['per_class'] == n})} seeds at {n} per class"
            for n in sorted({r["per_class"] for r in rows})
        )
        + f" x {len({r['arm'] for r in rows})} arms, "
        f"{args.epochs} epochs each after the probe-initialized "
        f"head, lr {args.learning_rate:g}, augmentation {args.augment}, batch "
        f"{BATCH_SIZE}, alpha {args.alpha:g}, beta {args.beta:g} (L2, L2-SP, 2019 arms), AdamW "
        f"decay {args.decay:g}; evaluation: {EVAL_PER_CLASS} fixed images per class."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(summary, rows, header)
    (args.out / "transfer_study.md").write_text(text)
    plot(summary, args.out / "transfer_study.png")
    result = {
        "machine": machine.describe(),
        "settings": {
            **{k: v for k, v in vars(args).items() if k != "merge"},
            "out": str(args.out),
            "backbone": str(args.backbone),
        },
        "wall_s": time.perf_counter() - started,
        "rows": rows,
        "summary": summary,
    }
    (args.out / "transfer_study.json").write_text(json.dumps(result, indent=2))
    print(text)
    return result


if __name__ == "__main__":
    main()

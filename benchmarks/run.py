"""`make bench`: run every benchmark in one process and write one table (benchmarks/RESULTS.md)."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from benchmarks import demo_run, machine, regularizer_speed, training

HERE = Path(__file__).parent


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "meets target" if ok else "**MISSES target**"


def _study_means(study: list[dict]) -> str:
    lines = []
    for l2 in sorted({r["l2"] for r in study}):
        rows = [r for r in study if r["l2"] == l2]
        acc = [r["final_val_accuracy"] for r in rows]
        gap = [r["final_gap"] for r in rows]
        lines.append(
            f"L2={l2:g}: mean final val accuracy {sum(acc) / len(acc):.3f} "
            f"(min {min(acc):.3f}, max {max(acc):.3f}), mean gap {sum(gap) / len(gap):+.3f}."
        )
    return " ".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    attach = regularizer_speed.attach_vs_2019(args.repeats)
    component = regularizer_speed.component_vs_bare(args.repeats)
    overhead = training.penalty_overhead()
    headroom = training.data_headroom()
    demo = demo_run.demo_wall_time()
    study = training.l2_study()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"Measured {when} on: {machine.describe()}. Medians of {args.repeats} runs unless "
        "stated; ratios are within one run on the same machine.",
        "",
        "**In-place `regularize` vs the 2019 rebuild** (224x224, weights=None; target >= 100x)",
        "",
        _table(
            ["model", "regularize", "2019 rebuild", "speed-up", "verdict"],
            [
                [
                    r["model"],
                    f"{r['regularize_s'] * 1e3:.1f} ms",
                    f"{r['legacy_2019_s'] * 1e3:.0f} ms",
                    f"{r['speedup']:.0f}x",
                    _verdict(r["speedup"] >= 100),
                ]
                for r in attach
            ],
        ),
        "",
        "**Component path (load, regularize, checks 1-3, save, reload, checks 1-5) vs bare "
        "`load_model` + `save`** (target <= 2.0x)",
        "",
        _table(
            ["model", "bare load+save", "component path", "ratio", "verdict"],
            [
                [
                    r["model"],
                    f"{r['bare_s']:.2f} s",
                    f"{r['component_s']:.2f} s",
                    f"{r['ratio']:.2f}x",
                    _verdict(r["ratio"] <= 2.0),
                ]
                for r in component
            ],
        ),
        "",
        "**Penalty overhead per train step**, L2 and L2-SP on all 52 kernels vs none, median "
        "of 60 alternating steps (target <= 5%)",
        "",
        _table(
            ["model", "without", "with L2", "overhead", "with L2-SP", "overhead", "verdict"],
            [
                [
                    r["model"],
                    f"{r['step_without_s'] * 1e3:.1f} ms",
                    f"{r['step_with_l2_s'] * 1e3:.1f} ms",
                    f"{r['overhead'] * 100:+.1f}%",
                    f"{r['step_with_l2sp_s'] * 1e3:.1f} ms",
                    f"{r['overhead_l2sp'] * 100:+.1f}%",
                    _verdict(max(r["overhead"], r["overhead_l2sp"]) <= 0.05),
                ]
                for r in overhead
            ],
        ),
        "",
        "**tf.data headroom** on the demo task (parse, decode, resize, preprocess, augment; "
        "cached) vs what a train step consumes (target >= 3x)",
        "",
        _table(
            ["input pipeline", "train step", "headroom", "verdict"],
            [
                [
                    f"{headroom['data_examples_per_s']:.0f} examples/s",
                    f"{headroom['train_examples_per_s']:.0f} examples/s",
                    f"{headroom['headroom']:.1f}x",
                    _verdict(headroom["headroom"] >= 3),
                ]
            ],
        ),
        "",
        "**Demo wall time**: `backbone-reg run` (what `make run` calls) in a fresh folder, then "
        "again unchanged (targets: first <= 5 min, cached re-run <= 90 s)",
        "",
        _table(
            ["run", "whole command", "pipeline", "node states", "verdict"],
            [
                [
                    "first (builds demo data, pre-trains the source backbone)",
                    f"{demo['first_command_s']:.0f} s",
                    f"{demo['first_pipeline_s']:.0f} s",
                    ", ".join(demo["first_states"]),
                    _verdict(demo["first_command_s"] <= 300),
                ],
                [
                    "unchanged re-run",
                    f"{demo['cached_command_s']:.0f} s",
                    f"{demo['cached_pipeline_s']:.0f} s",
                    ", ".join(demo["cached_states"]),
                    _verdict(demo["cached_command_s"] <= 90),
                ],
            ],
        ),
        "",
        "**L2 off vs on** on the demo transfer task (digits 5-9, ~100 training images): "
        "40 epochs, no early stopping, lr 1e-3, BatchNorm frozen, 3 seeds",
        "",
        _table(
            ["L2", "seed", "final val accuracy", "final train-val gap", "best val accuracy"],
            [
                [
                    f"{r['l2']:g}",
                    str(r["seed"]),
                    f"{r['final_val_accuracy']:.3f}",
                    f"{r['final_gap']:+.3f}",
                    f"{r['best_val_accuracy']:.3f}",
                ]
                for r in study
            ],
        ),
        "",
        _study_means(study),
    ]
    text = "\n".join(parts) + "\n"
    (HERE / "RESULTS.md").write_text(text)
    (HERE / "results.json").write_text(
        json.dumps(
            {
                "machine": machine.describe(),
                "measured": when,
                "attach": attach,
                "component": component,
                "penalty_overhead": overhead,
                "data_headroom": headroom,
                "demo": demo,
                "l2_study": study,
            },
            indent=2,
        )
    )
    print(text)


if __name__ == "__main__":
    main()

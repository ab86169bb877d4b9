"""`make bench`: run every benchmark in one process and write one table (benchmarks/RESULTS.md)."""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from pathlib import Path

from benchmarks import (
    demo_run,
    ingestion,
    machine,
    object_store,
    regularizer_speed,
    retraining,
    scale,
    startup,
    training,
    transfer_study,
)
from benchmarks.markdown import table, verdict

HERE = Path(__file__).parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--skip-study",
        action="store_true",
        help="Leave out the transfer study (~80 min on 2 cores).",
    )
    parser.add_argument(
        "--skip-retraining",
        action="store_true",
        help="Leave out the retraining schedule (window of spans; ~30 min on 2 cores).",
    )
    parser.add_argument(
        "--scale-sizes",
        default=",".join(map(str, scale.DEFAULT_SIZES)),
        help="Image counts of the scale benchmark (500 to 32,000: ~20 min on 2 cores); '' skips.",
    )
    args = parser.parse_args(argv)

    attach = regularizer_speed.attach_vs_2019(args.repeats)
    fingerprint = regularizer_speed.fingerprint_vs_parts(args.repeats)
    component = regularizer_speed.component_vs_bare(args.repeats)
    overhead = training.penalty_overhead()
    headroom = training.data_headroom()
    inputs, fit = training.scale_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        demo = demo_run.demo_wall_time(Path(tmp))
        # Same run, same machine state: the lineage rows read the demo's store.
        start = startup.measure(3, Path(tmp) / "runs" / "demo" / "metadata.sqlite")
    store = object_store.local_vs_s3()
    beam_workers = ingestion.workers_1_vs_2()
    # Writes its own scale.{json,md,png}; run it alone with `python -m benchmarks.scale`.
    scaled = scale.main(["--sizes", args.scale_sizes]) if args.scale_sizes else None
    # The study writes its own transfer_study.{md,png,json}; run it alone with
    # `python -m benchmarks.transfer_study`.
    study = None if args.skip_study else transfer_study.main([])
    # Writes retraining.{md,png,json}; alone: `python -m benchmarks.retraining`.
    schedule = None if args.skip_retraining else retraining.main([])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"Measured {when} on: {machine.describe()}. Medians of {args.repeats} runs unless "
        "stated; ratios are within one run on the same machine.",
        "",
        *regularizer_speed.tables(attach, fingerprint, component),
        "",
        "**Penalty overhead per train step**, L2 and L2-SP on all 52 kernels vs none, median "
        "of 60 alternating steps (target <= 5%)",
        "",
        table(
            ["model", "without", "with L2", "overhead", "with L2-SP", "overhead", "verdict"],
            [
                [
                    r["model"],
                    f"{r['step_without_s'] * 1e3:.1f} ms",
                    f"{r['step_with_l2_s'] * 1e3:.1f} ms",
                    f"{r['overhead'] * 100:+.1f}%",
                    f"{r['step_with_l2sp_s'] * 1e3:.1f} ms",
                    f"{r['overhead_l2sp'] * 100:+.1f}%",
                    verdict(max(r["overhead"], r["overhead_l2sp"]) <= 0.05),
                ]
                for r in overhead
            ],
        ),
        "",
        "**tf.data headroom** on the demo task (parse, decode, resize, preprocess, augment; "
        "nothing cached) vs what a train step consumes (target >= 3x)",
        "",
        table(
            ["input pipeline", "train step", "headroom", "verdict"],
            [
                [
                    f"{headroom['data_examples_per_s']:.0f} examples/s",
                    f"{headroom['train_examples_per_s']:.0f} examples/s",
                    f"{headroom['headroom']:.1f}x",
                    verdict(headroom["headroom"] >= 3),
                ]
            ],
        ),
        "",
        f"**The Trainer's input pipeline vs the physical floor**: {inputs['images']} generated "
        f"{inputs['size']}x{inputs['size']} JPEGs in {inputs['shards']} GZIP shards "
        f"({inputs['cores']} cores), medians of 7 alternating passes. Per core: decoded images "
        "per CPU-second of the process (what a pass costs, whatever else runs on the machine). "
        "Floor: one `tf.data` map of parse + `decode_jpeg` + resize (AUTOTUNE). Trainer: "
        "`make_dataset(training=True)` with its defaults (shards shuffled and interleaved, "
        "encoded records shuffled, decode + resize + preprocess + augmentation in parallel, no "
        "cache) (target >= 0.8x per core)",
        "",
        table(
            ["pipeline", "images/s per core", "vs floor", "images/s (wall)", "vs floor", "verdict"],
            [
                [
                    "floor",
                    f"{inputs['floor_images_per_cpu_s']:.0f}",
                    "1.00x",
                    f"{inputs['floor_images_per_s']:.0f}",
                    "1.00x",
                    "",
                ],
                [
                    "Trainer (augmentation on, the default)",
                    f"{inputs['trainer_images_per_cpu_s']:.0f}",
                    f"{inputs['ratio']:.2f}x",
                    f"{inputs['trainer_images_per_s']:.0f}",
                    f"{inputs['wall_ratio']:.2f}x",
                    verdict(inputs["ratio"] >= 0.8),
                ],
                [
                    "Trainer, augment=false",
                    f"{inputs['trainer_no_augment_images_per_cpu_s']:.0f}",
                    f"{inputs['ratio_no_augment']:.2f}x",
                    f"{inputs['trainer_no_augment_images_per_s']:.0f}",
                    f"{inputs['wall_ratio_no_augment']:.2f}x",
                    verdict(inputs["ratio_no_augment"] >= 0.8),
                ],
            ],
        ),
        "",
        f"**The Trainer's fit loop vs a bare `model.fit`**: {fit['model']}, {fit['images']} "
        "of the same JPEGs; the Trainer's compile settings, metrics, callbacks and input "
        "pipeline vs Adam + cross-entropy on the floor pipeline; training images per CPU-second "
        "and per wall-clock second, no validation, medians of 3 alternating epochs each from "
        "the same starting weights (target >= 0.9x)",
        "",
        table(
            ["", "Trainer", "bare fit", "ratio", "verdict"],
            [
                [
                    "images per CPU-second",
                    f"{fit['trainer_images_per_cpu_s']:.1f}",
                    f"{fit['bare_images_per_cpu_s']:.1f}",
                    f"{fit['ratio']:.2f}x",
                    verdict(fit["ratio"] >= 0.9),
                ],
                [
                    "images/s (wall)",
                    f"{fit['trainer_images_per_s']:.1f}",
                    f"{fit['bare_images_per_s']:.1f}",
                    f"{fit['wall_ratio']:.2f}x",
                    "",
                ],
            ],
        ),
        "",
        "**Demo wall time**: `backbone-reg run` (what `make run` calls) in a fresh folder, then "
        "again unchanged (targets: first <= 5 min, cached re-run <= 90 s)",
        "",
        table(
            ["run", "whole command", "pipeline", "node states", "verdict"],
            [
                [
                    "first (builds demo data, installs the committed backbone)",
                    f"{demo['first_command_s']:.0f} s",
                    f"{demo['first_pipeline_s']:.0f} s",
                    ", ".join(demo["first_states"]),
                    verdict(demo["first_command_s"] <= 300),
                ],
                [
                    "unchanged re-run",
                    f"{demo['cached_command_s']:.0f} s",
                    f"{demo['cached_pipeline_s']:.0f} s",
                    ", ".join(demo["cached_states"]),
                    verdict(demo["cached_command_s"] <= 90),
                ],
            ],
        ),
        "",
        "**Start-up of the command line**: each command in a fresh process, median of "
        f"{start['repeats']}, before (commit {start['before']}) and after issue 13, as ratios to "
        'a bare `python -c "import tensorflow"` measured in the same run (CPU = user + '
        "system time of the process). The cached re-run above spends its time the same way: "
        f"{demo['cached_command_s']:.0f} s = "
        f"{demo['cached_command_s'] / start['import_tensorflow']['wall_s']:.1f}x the bare "
        "import, of which the pipeline itself "
        f"{demo['cached_pipeline_s']:.0f} s.",
        "",
        table(["command", "before", "after"], startup.table_rows(start)),
        "",
        "**What regularization buys** (transfer study, 10 seeds x 5 arms x 2 data sizes): "
        + (
            "see [transfer_study.md](transfer_study.md) and transfer_study.png."
            if study
            else "not run in this run (--skip-study); the committed "
            "[transfer_study.md](transfer_study.md) states when and where it was measured "
            "(`python -m benchmarks.transfer_study`)."
        ),
        "",
        "**Scheduled retraining on drifting spans** (newest span vs a window of 3 vs all spans, "
        "accuracy over time on a fixed holdout, 3 seeds): "
        + (
            "see [retraining.md](retraining.md) and retraining.png."
            if schedule
            else "not run in this run (--skip-retraining); the committed "
            "[retraining.md](retraining.md) states when and where it was measured "
            "(`python -m benchmarks.retraining`)."
        ),
        "",
        "**The demo's recipe over 10 seeds** (fine-tuned vs linear probe vs pixel logistic "
        "regression, blessed or not): measured separately, see "
        "[demo_recipe.md](demo_recipe.md) (`python -m benchmarks.demo_recipe`).",
        "",
        "**Local pipeline on s3:// vs local paths** (reduced e2e config, fresh root each run, "
        f"alternating, median of {store['repeats']}; S3 = moto_server on 127.0.0.1)",
        "",
        table(
            ["locations", "pipeline", "whole command"],
            [
                [label, f"{store[key + '_pipeline_s']:.0f} s", f"{store[key + '_command_s']:.0f} s"]
                for label, key in (("local paths", "local"), ("s3:// (all four)", "s3"))
            ]
            + [
                [
                    "ratio s3/local",
                    f"{store['pipeline_ratio']:.2f}x",
                    f"{store['command_ratio']:.2f}x",
                ]
            ],
        ),
        "",
        f"**ImageExampleGen with 1 vs 2 Beam workers** (DirectRunner multi_processing), "
        f"{beam_workers['images']} generated {beam_workers['image_size']}px JPEGs, median of "
        f"{beam_workers['repeats']} alternating runs; marginal = (images - "
        f"{beam_workers['small']}) / (step time - step time on the first {beam_workers['small']}"
        "), i.e. without the workers' start-up",
        "",
        table(ingestion.TABLE_HEADER, ingestion.table_rows(beam_workers)),
        "",
        "**Scale** (`backbone-reg run` at N images, peak RSS and wall time of each step): "
        + (
            "see [scale.md](scale.md) and scale.png. Memory at the largest N / the smallest: "
            + (
                f"{scaled['verdicts']['memory']['ratio']:.2f}x"
                if scaled["verdicts"]["memory"]["ratio"] is not None
                else scaled["verdicts"]["memory"].get("why", "n/a")
            )
            + f" (target <= {scale.MEMORY_TARGET}x)."
            if scaled
            else "not run in this run (--scale-sizes '')."
        ),
    ]
    text = "\n".join(parts) + "\n"
    (HERE / "RESULTS.md").write_text(text)
    (HERE / "results.json").write_text(
        json.dumps(
            {
                "machine": machine.describe(),
                "measured": when,
                "attach": attach,
                "fingerprint": fingerprint,
                "component": component,
                "penalty_overhead": overhead,
                "data_headroom": headroom,
                "input_throughput": inputs,
                "training_throughput": fit,
                "demo": demo,
                "startup": start,
                "transfer_study": study["summary"] if study else None,
                "retraining": schedule["summary"] if schedule else None,
                "object_store": store,
                "ingestion_workers": beam_workers,
                "scale_verdicts": scaled["verdicts"] if scaled else None,
            },
            indent=2,
        )
    )
    print(text)


if __name__ == "__main__":
    main()

"""ImageExampleGen images/s with 1 vs 2 Beam workers (DirectRunner multi-processing).

The same generated 224x224 JPEGs (5 classes, ``benchmarks.jpeg_data``) are ingested by a
one-node pipeline (ImageExampleGen on LocalDagRunner, no cache, fresh root each run) with
``--direct_running_mode=multi_processing --direct_num_workers=W`` for W = 1 and 2, alternating,
``repeats`` times each, in this process; ``in_memory`` (the default config's mode) is measured
once per repeat as the reference. Two rates per mode:

* images/s of the step: images / the step's wall time, worker start-up included (what a user
  waits for);
* marginal images/s: the same mode also ingests the first ``small`` images of the same data,
  and ``(images - small) / (seconds - seconds_small)`` removes the fixed cost (worker
  processes importing TensorFlow, TFX's driver): the rate the workers sustain.

Each run's shard count is reported (the default rule gives at least one shard per worker,
``components/image_ingestion/shards.py``).

``python -m benchmarks.ingestion [--images 8000] [--small 200] [--repeats 2]`` writes
``benchmarks/ingestion.json``; ``make bench`` includes it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.jpeg_data import write_jpeg_classes

HERE = Path(__file__).parent
MODES = {
    "in_memory": ("--direct_running_mode=in_memory", "--direct_num_workers=1"),
    "multi_processing x1": ("--direct_running_mode=multi_processing", "--direct_num_workers=1"),
    "multi_processing x2": ("--direct_running_mode=multi_processing", "--direct_num_workers=2"),
}


def ingest(images: Path, root: Path, beam_args: tuple[str, ...]) -> dict:
    """Runs ImageExampleGen alone on ``images``; returns seconds, examples and shard files."""
    from tfx.orchestration import metadata
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.pipeline import Pipeline

    from backbone_regularizer.components.image_ingestion import ImageExampleGen

    example_gen = ImageExampleGen(input_base=str(images))
    pipeline = Pipeline(
        pipeline_name="bench-ingestion",
        pipeline_root=str(root / "pipeline"),
        components=[example_gen],
        enable_cache=False,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")
        ),
        beam_pipeline_args=list(beam_args),
    )
    started = time.perf_counter()
    LocalDagRunner().run(pipeline)
    seconds = time.perf_counter() - started
    with metadata.Metadata(
        metadata.sqlite_metadata_connection_config(str(root / "metadata.sqlite"))
    ) as store:
        [examples] = store.store.get_artifacts_by_type("Examples")
    props = examples.custom_properties
    examples_written = props["count_train"].int_value + props["count_eval"].int_value
    shards = {
        split: len(list(Path(examples.uri, f"Split-{split}").glob("*.gz")))
        for split in ("train", "eval")
    }
    return {"seconds": seconds, "examples": examples_written, "shards": shards}


def _checked(run: dict, count: int, mode: str) -> dict:
    if run["examples"] != count:
        raise RuntimeError(f"Expected {count} examples from every run. Received: {run} ({mode})")
    return run


def workers_1_vs_2(count: int = 8000, small: int = 200, repeats: int = 2, size: int = 224) -> dict:
    """Median rates per mode over ``repeats`` alternating runs on the same data."""
    with tempfile.TemporaryDirectory(prefix="bench-ingestion-") as tmp:
        tmp = Path(tmp)
        images = write_jpeg_classes(tmp / "images", count, size)
        few = write_jpeg_classes(tmp / "small", small, size)  # the first `small` of `images`
        runs: dict[str, list[tuple[dict, dict]]] = {mode: [] for mode in MODES}
        for i in range(repeats):
            for mode, beam_args in MODES.items():
                name = f"{mode.replace(' ', '-')}-{i}"
                full = _checked(ingest(images, tmp / name, beam_args), count, mode)
                fixed = _checked(ingest(few, tmp / f"{name}-small", beam_args), small, mode)
                runs[mode].append((full, fixed))
    result: dict = {
        "images": count,
        "small": small,
        "image_size": size,
        "repeats": repeats,
        "modes": {},
    }
    for mode, mode_runs in runs.items():
        seconds = statistics.median(full["seconds"] for full, _ in mode_runs)
        fixed = statistics.median(small_run["seconds"] for _, small_run in mode_runs)
        result["modes"][mode] = {
            "beam_args": list(MODES[mode]),
            "seconds": seconds,
            "seconds_small": fixed,
            "images_per_s": count / seconds,
            # None: the fixed cost varied more than the work took (a loaded machine).
            "marginal_images_per_s": (count - small) / (seconds - fixed)
            if seconds > fixed
            else None,
            "shards": mode_runs[0][0]["shards"],
            "runs_s": [[full["seconds"], small_run["seconds"]] for full, small_run in mode_runs],
        }
    one, two = (result["modes"][f"multi_processing x{w}"] for w in (1, 2))
    result["speedup_2_vs_1"] = two["images_per_s"] / one["images_per_s"]
    marginal = (one["marginal_images_per_s"], two["marginal_images_per_s"])
    result["marginal_speedup_2_vs_1"] = marginal[1] / marginal[0] if all(marginal) else None
    return result


def _rate(value: float | None, unit: str = "") -> str:
    return "n/a (noise)" if value is None else f"{value:.0f}{unit}"


def table_rows(result: dict) -> list[list[str]]:
    """Rows for ``benchmarks.markdown.table(TABLE_HEADER, ...)``."""
    rows = []
    for mode, row in result["modes"].items():
        shards = ", ".join(f"{split} {n}" for split, n in row["shards"].items())
        rows.append(
            [
                mode,
                f"{row['seconds']:.1f} s",
                f"{row['seconds_small']:.1f} s",
                _rate(row["images_per_s"]),
                _rate(row["marginal_images_per_s"]),
                shards,
            ]
        )
    marginal = result["marginal_speedup_2_vs_1"]
    rows.append(
        [
            "2 workers / 1 worker",
            "",
            "",
            f"{result['speedup_2_vs_1']:.2f}x",
            "n/a (noise)" if marginal is None else f"{marginal:.2f}x",
            "",
        ]
    )
    return rows


TABLE_HEADER = [
    "Beam mode",
    "step, all images",
    "step, small",
    "images/s (step)",
    "images/s (marginal)",
    "shards",
]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=8000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--output", type=Path, default=HERE / "ingestion.json")
    args = parser.parse_args(argv)
    result = workers_1_vs_2(args.images, args.small, args.repeats, args.image_size)
    result["machine"] = machine.describe()
    result["measured"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

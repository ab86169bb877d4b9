"""`make bench`: run every benchmark in one process and write one table (benchmarks/RESULTS.md)."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from benchmarks import machine, regularizer_speed

HERE = Path(__file__).parent


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "meets target" if ok else "**MISSES target**"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    attach = regularizer_speed.attach_vs_2019(args.repeats)
    component = regularizer_speed.component_vs_bare(args.repeats)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"Measured {when} on: {machine.describe()}. Medians of {args.repeats} runs; "
        "ratios are within one run on the same machine.",
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
        "**Component path (load, regularize, verify, save, reload, verify) vs bare "
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
    ]
    text = "\n".join(parts) + "\n"
    (HERE / "RESULTS.md").write_text(text)
    (HERE / "results.json").write_text(
        json.dumps(
            {"machine": machine.describe(), "attach": attach, "component": component}, indent=2
        )
    )
    print(text)


if __name__ == "__main__":
    main()

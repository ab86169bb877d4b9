"""Start-up cost of `backbone-reg` commands, as ratios to a bare ``import tensorflow``.

Each command runs in a fresh interpreter, ``repeats`` times (median wall time and CPU time,
user + system, of the child). Every row is measured in the same run as the reference
(``python -c "import tensorflow"``), so the ratios hold on a loaded machine where seconds do
not. Each command is measured twice: on this tree ("after") and on the tree of ``BEFORE``,
the commit before issue 13's start-up work ("before"), extracted with ``git archive`` and
run with the same environment. A command's row also says which of TensorFlow, TFX and TFMA
it imported.

Bytecode: the same reference is measured without ``.pyc`` files (``-X pycache_prefix`` to an
empty folder, ``-B``): what every process pays in a virtualenv installed without compiled
bytecode when ``PYTHONDONTWRITEBYTECODE`` is set (as on the machines this project was
measured on), which is why ``make`` installs with ``uv sync --compile-bytecode``.

Run alone: ``python -m benchmarks.startup [--repeats N] [--metadata runs/demo/metadata.sqlite]``
(the lineage rows need a store with a pushed model, e.g. after ``make run``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BEFORE = "2868ca1"  # main before issue 13 (console, start-up): the "before" tree
HEAVY = ("tensorflow", "tfx", "tensorflow_model_analysis")
IMAGE = "example.com/backbone-regularizer:bench"
# Runs a command of the tree on sys.path[0] (STARTUP_ROOT, else the installed one) the way
# the console script does, then writes which heavy modules it imported to STARTUP_REPORT.
_WRAPPER = f"""
import os, sys
if os.environ.get("STARTUP_ROOT"):
    sys.path.insert(0, os.environ["STARTUP_ROOT"])
try:
    from backbone_regularizer.pipeline.cli.main import main
except ImportError:  # the tree before the layout change: pipeline/cli.py
    from backbone_regularizer.pipeline.cli import main
code = 0
try:
    main.main(sys.argv[1:], prog_name="backbone-reg")
except SystemExit as exit:
    code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
with open(os.environ["STARTUP_REPORT"], "w") as report:
    report.write(",".join(m for m in {HEAVY!r} if m in sys.modules))
sys.stdout.flush(); sys.stderr.flush()
os._exit(code)
"""


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    cpu = _child_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - started, _child_cpu() - cpu, done.returncode


def _measure(command, env, cwd, repeats: int, expect_code: int = 0) -> dict:
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu, code = _time(command, env, cwd)
        if code != expect_code:
            done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
            raise RuntimeError(
                f"Expected exit code {expect_code} from {command[-6:]}. Received: {code}\n"
                f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        walls.append(wall)
        cpus.append(cpu)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def _extract(revision: str, folder: Path) -> Path:
    """The ``components`` and ``pipeline`` packages of ``revision`` under ``folder``."""
    archive = folder / "before.tar"
    with archive.open("wb") as out:
        subprocess.run(
            ["git", "-C", str(REPO), "archive", revision, "components", "pipeline"],
            stdout=out,
            check=True,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "tree")  # noqa: S202 - our own repository's archive
    return folder / "tree"


def _commands(folder: Path, metadata: Path | None) -> list[tuple[str, list[str], int]]:
    """(label, arguments, expected exit code) of each command measured."""
    config = folder / "cluster.json"
    config.write_text(
        json.dumps(
            {
                "pipeline_name": "startup-bench",
                "root": "gs://bench-bucket/root",
                "data_root": "gs://bench-bucket/images",
                "push_destination": "gs://bench-bucket/serving",
                "backbone": {"keras_file": "gs://bench-bucket/source_backbone"},
            }
        )
    )
    missing = str(folder / "missing.json")
    commands = [
        ("backbone-reg --help", ["--help"], 0),
        (
            "schedule (stops at the missing package, before any cluster)",
            ["schedule", "--cron", "@daily", "--job-name", "bench", "--package", missing],
            1,
        ),
        (
            "compile (writes the PipelineJob)",
            ["compile", "--image", IMAGE, "--config", str(config), "--output"],
            0,
        ),
    ]
    if metadata is not None:
        commands += [
            ("lineage --no-metrics", ["lineage", "--no-metrics", "--metadata", str(metadata)], 0),
            ("lineage (metrics through TFMA)", ["lineage", "--metadata", str(metadata)], 0),
        ]
    return commands


def measure(repeats: int = 3, metadata: str | os.PathLike | None = None) -> dict:
    """Reference imports and each command, before and after; see the module docstring."""
    metadata = Path(metadata).resolve() if metadata else None
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        before_tree = _extract(BEFORE, folder)
        empty_cache = folder / "no-pycache"
        empty_cache.mkdir()
        python = sys.executable
        reference = _measure([python, "-c", "import tensorflow"], env, folder, repeats)
        no_bytecode = _measure(
            [python, "-B", "-X", f"pycache_prefix={empty_cache}", "-c", "import tensorflow"],
            env,
            folder,
            repeats,
        )
        for label, args, code in _commands(folder, metadata):
            row = {"command": label}
            for when, root in (("before", before_tree), ("after", None)):
                report = folder / f"report-{when}"
                run_env = {**env, "STARTUP_REPORT": str(report)}
                if root is not None:
                    run_env["STARTUP_ROOT"] = str(root)
                arguments = list(args)
                if arguments[-1] == "--output":
                    arguments.append(str(folder / f"{when}.json"))
                command = [python, "-c", _WRAPPER, *arguments]
                timing = _measure(command, run_env, folder, repeats, code)
                loaded = report.read_text().split(",") if report.read_text() else []
                row[when] = {
                    **timing,
                    "wall_ratio": timing["wall_s"] / reference["wall_s"],
                    "cpu_ratio": timing["cpu_s"] / reference["cpu_s"],
                    "imports": loaded,
                }
            rows.append(row)
    return {
        "repeats": repeats,
        "before": BEFORE,
        "import_tensorflow": reference,
        "import_tensorflow_without_bytecode": {
            **no_bytecode,
            "wall_ratio": no_bytecode["wall_s"] / reference["wall_s"],
            "cpu_ratio": no_bytecode["cpu_s"] / reference["cpu_s"],
        },
        "commands": rows,
        "lineage_measured": metadata is not None,
    }


def table_rows(result: dict) -> list[list[str]]:
    """Rows for benchmarks/RESULTS.md: command, before and after (wall, ratio, imports)."""

    def cell(entry: dict) -> str:
        imports = "+".join(m.replace("tensorflow_model_analysis", "TFMA") for m in entry["imports"])
        return (
            f"{entry['wall_s']:.1f} s ({entry['wall_ratio']:.2f}x; CPU {entry['cpu_ratio']:.2f}x)"
            f", {'imports ' + imports if imports else 'no TensorFlow'}"
        )

    ref = result["import_tensorflow"]
    raw = result["import_tensorflow_without_bytecode"]
    rows = [
        ['`python -c "import tensorflow"` (reference)', "", f"{ref['wall_s']:.1f} s (1.00x)"],
        [
            "the same without .pyc files",
            "",
            f"{raw['wall_s']:.1f} s ({raw['wall_ratio']:.2f}x; CPU {raw['cpu_ratio']:.2f}x)",
        ],
    ]
    rows += [[r["command"], cell(r["before"]), cell(r["after"])] for r in result["commands"]]
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--metadata", default=None, help="ML Metadata sqlite with a pushed model.")
    args = parser.parse_args(argv)
    result = measure(args.repeats, args.metadata)
    print(json.dumps(result, indent=2))
    for row in table_rows(result):
        print(" | ".join(row))
    return result


if __name__ == "__main__":
    main()

"""Wall time of the demo as a newcomer runs it: `backbone-reg run` in a fresh folder, twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(cwd: Path) -> tuple[float, dict]:
    command = [str(Path(sys.executable).with_name("backbone-reg")), "run", "--json"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"backbone-reg run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout)  # with --json, stdout holds the summary alone
    return seconds, summary


def demo_wall_time(folder: Path | None = None) -> dict:
    """First run (demo data built, every node executed) and an unchanged re-run (cached).

    In ``folder`` (kept: its ``runs/demo/metadata.sqlite`` serves the start-up benchmark's
    lineage rows), else in a temporary folder.
    """
    if folder is None:
        with tempfile.TemporaryDirectory() as tmp:
            return demo_wall_time(Path(tmp))
    first_s, first = _run(folder)
    second_s, second = _run(folder)
    return {
        "first_command_s": first_s,
        "first_pipeline_s": first["wall_time_s"],
        "first_states": sorted(set(first["nodes"].values())),
        "cached_command_s": second_s,
        "cached_pipeline_s": second["wall_time_s"],
        "cached_states": sorted(set(second["nodes"].values())),
        "blessed": first.get("blessed"),
    }

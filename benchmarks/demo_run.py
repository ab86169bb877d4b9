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
    summary = json.loads(done.stdout[done.stdout.rindex("\n{\n") + 1 :])
    return seconds, summary


def demo_wall_time() -> dict:
    """First run (demo data built, every node executed) and an unchanged re-run (cached)."""
    with tempfile.TemporaryDirectory() as tmp:
        first_s, first = _run(Path(tmp))
        second_s, second = _run(Path(tmp))
    return {
        "first_command_s": first_s,
        "first_pipeline_s": first["wall_time_s"],
        "first_states": sorted(set(first["nodes"].values())),
        "cached_command_s": second_s,
        "cached_pipeline_s": second["wall_time_s"],
        "cached_states": sorted(set(second["nodes"].values())),
        "blessed": first.get("blessed"),
    }

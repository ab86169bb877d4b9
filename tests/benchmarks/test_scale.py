"""The scale benchmark's harness: step lines, RSS of a process tree, failed and killed runs.

The real benchmark (500 to 8,000 224x224 images) runs in ``make bench``. Here: the parsing
and accounting on the console's own step lines, ``measure_run`` on a stand-in command that
prints those lines and grows a child process, and ``benchmarks.scale.main`` on real
``backbone-reg run`` commands that fail at a step or are killed by the memory guard. No
target is asserted: the machine is shared.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import pytest

from backbone_regularizer.pipeline.cli.console import format_step
from benchmarks import scale


def test_step_lines_of_the_console_are_parsed():
    assert scale.parse_step_line(format_step("Trainer", "started", 6, 10) + "\n") == {
        "node": "Trainer",
        "index": 6,
        "total": 10,
        "status": "started",
        "seconds": None,
    }
    parsed = scale.parse_step_line(format_step("latest_pushed_model", "completed", 8, 10, 12.34))
    assert (parsed["node"], parsed["status"], parsed["seconds"]) == (
        "latest_pushed_model",
        "completed",
        12.3,
    )
    for status in ("cached", "failed", "skipped"):
        assert scale.parse_step_line(format_step("Pusher", status, 10, 10, 0.0))["status"] == status
    assert scale.parse_step_line("Epoch 1/1 ... loss 0.5") is None
    assert scale.parse_step_line(format_step("demo data", "ready", seconds=1.0)) is None


def test_tracker_attributes_samples_to_the_running_step():
    tracker = scale.StepTracker()
    tracker.on_sample(100)  # before any step: start-up
    tracker.on_line(format_step("ImageExampleGen", "started", 1, 2), 10.0)
    tracker.on_sample(300)
    tracker.on_sample(350)
    tracker.on_line(format_step("ImageExampleGen", "completed", 1, 2, 4.0), 14.0)
    tracker.on_line(format_step("Trainer", "started", 2, 2), 14.0)
    tracker.on_sample(900)
    tracker.finish(20.5, "killed")  # the command died during the Trainer

    result = tracker.result()
    assert result["steps"] == {
        "ImageExampleGen": {
            "status": "completed",
            "seconds": 4.0,
            "peak_rss_bytes": 350,
            "start_rss_bytes": 300,
        },
        "Trainer": {
            "status": "killed",
            "seconds": 6.5,
            "peak_rss_bytes": 900,
            "start_rss_bytes": 900,
        },
    }
    assert result["phases"] == {scale.START_UP: 100}


def run(images, status="ok", peak=1.0, **step_seconds):
    steps = {
        node: {"status": "completed", "seconds": s, "peak_rss_bytes": int(peak * 1e9)}
        for node, s in step_seconds.items()
    }
    return {
        "images": images,
        "status": status,
        "wall_s": sum(step_seconds.values()),
        "peak_rss_bytes": int(peak * 1e9),
        "max_process_rss_bytes": int(peak * 1e9),
        "shards": {"train": 1, "eval": 1},
        "steps": steps,
    }


def test_verdicts_on_memory_and_linear_time():
    linear = [
        run(500, peak=3.0, Trainer=60, Evaluator=20),
        run(2000, peak=3.2, Trainer=150, Evaluator=50),
        run(8000, peak=3.5, Trainer=510, Evaluator=170),
    ]
    checks = scale.verdicts(linear)
    assert checks["memory"]["met"] and checks["memory"]["ratio"] == pytest.approx(3.5 / 3.0)
    assert checks["linear"]["Trainer"]["marginal_s_per_image"] == pytest.approx([0.06, 0.06])
    assert checks["linear"]["Trainer"]["met"] and checks["linear"]["Evaluator"]["met"]
    assert checks["linear"]["StatisticsGen"]["met"] is None  # not measured

    growing = [
        run(500, peak=3.0, Trainer=60),
        run(2000, peak=8.3, Trainer=150),
        run(8000, status="killed: memory limit 18 GB exceeded (18.2 GB)", peak=18.2),
    ]
    checks = scale.verdicts(growing)
    assert checks["memory"]["met"] is False and "N=8000: killed" in checks["memory"]["why"]
    assert checks["linear"]["Trainer"]["met"] is None  # the 8,000 run never finished it

    quadratic = [run(500, Trainer=10), run(2000, Trainer=70), run(8000, Trainer=1000)]
    assert scale.verdicts(quadratic)["linear"]["Trainer"]["met"] is False


def test_a_step_that_hardly_moves_between_the_smallest_sizes_is_compared_from_the_next():
    # StatisticsGen measured 4.5 s at 500 and 2,000 images: a first marginal of 0 is noise.
    flat_start = [
        run(500, StatisticsGen=4.5),
        run(2000, StatisticsGen=4.5),
        run(8000, StatisticsGen=7.5),
        run(32000, StatisticsGen=19.5),
    ]
    entry = scale.verdicts(flat_start)["linear"]["StatisticsGen"]
    assert entry["reference"] == {"from": 2000, "to": 8000}
    assert entry["ratio"] == pytest.approx(1.0) and entry["met"] is True
    rows = scale.markdown({**RESULT, "runs": flat_start, "verdicts": scale.verdicts(flat_start)})
    assert "| 1.00x (vs 2000->8000) | meets target |" in rows

    growing_late = flat_start[:3] + [run(32000, StatisticsGen=60)]
    assert scale.verdicts(growing_late)["linear"]["StatisticsGen"]["met"] is False

    three = flat_start[:2] + [run(8000, StatisticsGen=4.8)]
    entry = scale.verdicts(three)["linear"]["StatisticsGen"]
    assert entry["met"] is None and entry["why"].startswith("below resolution")


RESULT = {
    "measured": "now",
    "machine": "test machine",
    "note": "shared",
    "config_description": "tiny",
}


def test_markdown_and_plot_of_a_result(tmp_path):
    runs = [
        run(500, peak=3.0, ImageExampleGen=6, Trainer=60),
        run(2000, status="killed: signal 9", peak=8.0, ImageExampleGen=22),
    ]
    result = {**RESULT, "runs": runs, "verdicts": scale.verdicts(runs)}
    text = scale.markdown(result)
    assert "| 2000 | killed: signal 9 | 22 s | 8.00 GB |" in text
    assert "| Trainer | 60.0 s, 3.00 GB | not reached |" in text
    assert "**MISSES target**" in text  # memory: the 2,000 run did not finish
    scale.plot(result, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").read_bytes().startswith(b"\x89PNG")


STAND_IN = textwrap.dedent(
    """
    import json, subprocess, sys, time
    from backbone_regularizer.pipeline.cli.console import format_step
    print("running pipeline x", file=sys.stderr, flush=True)
    print(format_step("ImageExampleGen", "started", 1, 2), file=sys.stderr, flush=True)
    time.sleep(1.0)
    print(format_step("ImageExampleGen", "completed", 1, 2, 1.0), file=sys.stderr, flush=True)
    print(format_step("Trainer", "started", 2, 2), file=sys.stderr, flush=True)
    # A child process holding ~200 MB: the tree's RSS, not only this process's.
    child = subprocess.Popen([sys.executable, "-c",
        "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
        "time.sleep(2.0)"])
    child.wait()
    print(format_step("Trainer", "completed", 2, 2, 2.5), file=sys.stderr, flush=True)
    print(json.dumps({"nodes": {"ImageExampleGen": "COMPLETE", "Trainer": "COMPLETE"}}))
    """
)


def test_measure_run_samples_the_whole_process_tree(tmp_path):
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    started = time.perf_counter()
    result = scale.measure_run([sys.executable, str(script)], dict(os.environ), 0.1, None)

    assert result["status"] == "ok" and result["exit_code"] == 0
    assert result["summary"] == {"nodes": {"ImageExampleGen": "COMPLETE", "Trainer": "COMPLETE"}}
    assert result["wall_s"] <= time.perf_counter() - started
    steps = result["steps"]
    assert {n: (s["status"], s["seconds"]) for n, s in steps.items()} == {
        "ImageExampleGen": ("completed", 1.0),
        "Trainer": ("completed", 2.5),
    }
    # The child's 200 MB count in the Trainer's peak and in the run's, not in the other step.
    assert steps["Trainer"]["peak_rss_bytes"] > steps["ImageExampleGen"]["peak_rss_bytes"] + 150e6
    assert result["peak_rss_bytes"] == steps["Trainer"]["peak_rss_bytes"]
    assert result["max_process_rss_bytes"] > 200 * 2**20  # the kernel's ru_maxrss of the child
    assert "running pipeline x" in result["stderr_tail"]


@pytest.mark.e2e
def test_a_run_that_fails_at_a_step_keeps_the_steps_measured_so_far(tmp_path):
    # One image: ImageExampleGen finds an empty split and fails the run (after BackboneLoader).
    result = scale.main(
        ["--sizes", "1", "--image-size", "32", "--poll", "0.2"]
        + ["--output-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work")]
    )

    [failed] = result["runs"]
    assert (failed["status"], failed["exit_code"], failed["summary"]) == ("failed", 1, None)
    steps = failed["steps"]
    assert list(steps) == ["BackboneLoader", "ImageExampleGen"]
    assert steps["BackboneLoader"]["status"] == "completed"
    assert steps["ImageExampleGen"]["status"] == "failed"
    assert all(s["seconds"] > 0 and s["peak_rss_bytes"] > 0 for s in steps.values())
    assert any(
        "Expected every split to receive at least one image" in line
        for line in failed["stderr_tail"]
    )
    written = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert written["runs"][0]["steps"] == steps
    assert "| ImageExampleGen |" in (tmp_path / "out" / "scale.md").read_text()
    assert (tmp_path / "out" / "scale.png").is_file()


@pytest.mark.e2e
def test_the_memory_guard_kills_the_run_and_says_so(tmp_path):
    result = scale.main(
        ["--sizes", "1", "--image-size", "32", "--poll", "0.1", "--memory-limit-gb", "0.15"]
        + ["--output-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work")]
    )

    [killed] = result["runs"]
    assert killed["status"].startswith("killed: memory limit 0.15 GB exceeded")
    assert killed["exit_code"] == -9
    assert killed["peak_rss_bytes"] > 0.15e9
    assert killed["phases"][scale.START_UP] > 0.15e9  # still importing: no step reached
    assert result["verdicts"]["memory"]["ratio"] is None

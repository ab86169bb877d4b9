"""Scale benchmark: peak RSS and wall time of every pipeline step at N images (issue 18, item 7).

For each N (default 500, 2,000, 8,000 and 32,000): N generated 224x224 JPEGs in 5 classes
(``benchmarks.jpeg_data``) and a user's config -- MobileNetV2 alpha 0.35 at 224x224, weights
none, 1 epoch, every other setting at its default -- run by ``backbone-reg run --config <file>
--json`` in a subprocess of its own. While it runs, the harness

* reads the step lines the command prints on stderr (``[ 3/10] StatisticsGen  completed
  4.2 s``): each step's status and wall time, as the local runner measured it;
* samples the resident memory (RSS) of the command's whole process tree (Beam workers and
  pip included) every ``--poll`` seconds from ``/proc``, and keeps the peak per step (the step
  running when the sample was taken; "start-up" before the first step, "summary" after the
  last);
* reads the largest single process's peak RSS from the kernel (``wait4``'s ``ru_maxrss``).

A run that fails or is killed -- by the ``--memory-limit-gb`` guard, which kills the command's
process group so a shared machine is not driven out of memory, or by anything else -- keeps
every step measured so far, the step it was in, and the end of its stderr. Sums of RSS count
pages shared between processes once per process: an upper bound.

Targets (issue 18): peak RSS at the largest N <= 1.3x the smallest; time per image of every
step that reads the data flat, i.e. a linear total: the marginal seconds per image between
successive sizes may not grow by more than 1.3x (needs three sizes; the reference is the first
pair of sizes between which the step's time grew by a second or more, see ``RESOLUTION_S``).

``python -m benchmarks.scale [--sizes 500,2000,8000,32000] [--image-size 224] [--epochs 1]
[--output-dir benchmarks] [--work-dir DIR]`` writes ``scale.json``, ``scale.md`` and the plot
``scale.png`` into the output folder; ``make bench`` runs it with the default sizes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from benchmarks import machine
from benchmarks.jpeg_data import write_jpeg_classes
from benchmarks.markdown import table, verdict

HERE = Path(__file__).parent
CLI = str(Path(sys.executable).with_name("backbone-reg"))
# Users train on 10^4 to 10^6 images: the largest size is where a growth would show.
DEFAULT_SIZES = (500, 2000, 8000, 32000)
CLASSES = 5
MEMORY_TARGET = 1.3  # peak RSS at the largest N / at the smallest
# Marginal s/image between the last two sizes / between the first two whose step time grew by
# at least RESOLUTION_S: a step whose time hardly moves from 500 to 2,000 images (fixed costs
# dominate) has no first marginal to compare with, only noise.
LINEAR_TARGET = 1.3
RESOLUTION_S = 1.0
# Steps whose work grows with the data; the others load or check a model, or read statistics.
DATA_STEPS = ("ImageExampleGen", "StatisticsGen", "Trainer", "Evaluator")
START_UP, AFTER_STEPS = "start-up", "summary"
# backbone_regularizer.pipeline.cli.console.format_step: "[ 3/10] StatisticsGen  completed  4.2 s"
STEP_LINE = re.compile(
    r"^\[\s*(?P<index>\d+)/(?P<total>\d+)\]\s+(?P<node>\S+)\s+(?P<status>[a-z]+)"
    r"(?:\s+(?P<seconds>[\d.]+) s)?\s*$"
)
_PAGE = os.sysconf("SC_PAGE_SIZE")
_GB = 1e9


def user_config(n: int, images: Path, root: Path, image_size: int, epochs: int) -> dict:
    """The config a user writes for their own data: only what differs from the defaults."""
    return {
        "pipeline_name": f"scale-{n}",
        "root": str(root),
        "data_root": str(images),
        "span_pattern": None,
        "backbone": {
            "architecture": "MobileNetV2",
            "input_shape": [image_size, image_size, 3],
            "weights": "none",
            "kwargs": {"alpha": 0.35},
        },
        "trainer": {
            "num_classes": CLASSES,
            "image_size": [image_size, image_size],
            "epochs": epochs,
        },
    }


def parse_step_line(line: str) -> dict | None:
    """A step line of ``backbone-reg run`` as a dict, or None for any other line."""
    match = STEP_LINE.match(line.strip())
    if not match:
        return None
    seconds = match.group("seconds")
    return {
        "node": match.group("node"),
        "index": int(match.group("index")),
        "total": int(match.group("total")),
        "status": match.group("status"),
        "seconds": None if seconds is None else float(seconds),
    }


def tree_rss(root_pid: int) -> int:
    """Bytes resident in ``root_pid`` and all its descendants (0 once it is gone)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


class StepTracker:
    """Steps of one run from its stderr lines, and the peak RSS sampled during each."""

    def __init__(self):
        self._lock = threading.Lock()
        self.current = START_UP
        self.started_at: dict[str, float] = {}
        self.steps: dict[str, dict] = {}
        self.peaks: dict[str, int] = {}
        self.first: dict[str, int] = {}  # the first sample of each phase: what it started from

    def on_line(self, line: str, now: float) -> None:
        event = parse_step_line(line)
        if event is None:
            return
        with self._lock:
            node = event["node"]
            if event["status"] == "started":
                self.current = node
                self.started_at[node] = now
                self.steps[node] = {"status": "running", "seconds": None}
            else:
                self.steps[node] = {"status": event["status"], "seconds": event["seconds"]}
                self.current = AFTER_STEPS if event["index"] == event["total"] else node

    def on_sample(self, rss: int) -> None:
        with self._lock:
            self.peaks[self.current] = max(self.peaks.get(self.current, 0), rss)
            self.first.setdefault(self.current, rss)

    def finish(self, now: float, how: str) -> None:
        """Marks a step still running when the command ended as ``how`` (killed, failed)."""
        with self._lock:
            for node, step in self.steps.items():
                if step["status"] == "running":
                    step["status"] = how
                    step["seconds"] = now - self.started_at[node]

    def result(self) -> dict:
        with self._lock:
            steps = {
                node: {
                    **step,
                    "peak_rss_bytes": self.peaks.get(node),
                    "start_rss_bytes": self.first.get(node),
                }
                for node, step in self.steps.items()
            }
            phases = {p: self.peaks[p] for p in (START_UP, AFTER_STEPS) if p in self.peaks}
            return {"steps": steps, "phases": phases}


def _read_lines(stream, sink) -> None:
    for line in iter(stream.readline, ""):
        sink(line)
    stream.close()


def _brief(summary: dict) -> dict:
    """What the results keep of the run's summary: states, metrics, blessing, training."""
    training = {k: v for k, v in (summary.get("training") or {}).items() if k != "config"}
    kept = {k: summary[k] for k in ("nodes", "evaluation", "blessed") if k in summary}
    return {**kept, "training": training} if training else kept


def measure_run(
    command: list[str], env: dict[str, str], poll: float, memory_limit: float | None
) -> dict:
    """Runs ``command`` (``backbone-reg run ... --json``), sampling its tree; see the module.

    Returns:
        ``exit_code``, ``status`` ("ok", "failed", "killed: ..."), ``wall_s``,
        ``peak_rss_bytes`` (tree), ``max_process_rss_bytes`` (kernel), ``steps``, ``phases``,
        ``summary`` (the command's JSON, when it printed one) and ``stderr_tail``.
    """
    tracker = StepTracker()
    tail: deque[str] = deque(maxlen=40)
    stdout: list[str] = []

    def on_stderr(line: str) -> None:
        tail.append(line.rstrip("\n"))
        tracker.on_line(line, time.perf_counter())

    started = time.perf_counter()
    # A session of its own: the memory guard kills this process group, nothing else.
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    readers = [
        threading.Thread(target=_read_lines, args=(process.stderr, on_stderr), daemon=True),
        threading.Thread(target=_read_lines, args=(process.stdout, stdout.append), daemon=True),
    ]
    for reader in readers:
        reader.start()
    peak, killed = 0, None
    while True:
        # wait4 on this child only: its own rusage (peak RSS of its largest process).
        pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        rss = tree_rss(process.pid)
        tracker.on_sample(rss)
        peak = max(peak, rss)
        if memory_limit and rss > memory_limit * _GB and killed is None:
            killed = f"killed: memory limit {memory_limit:g} GB exceeded ({rss / _GB:.1f} GB)"
            os.killpg(process.pid, signal.SIGKILL)
        time.sleep(poll)
    process.returncode = os.waitstatus_to_exitcode(wait_status)
    ended = time.perf_counter()
    for reader in readers:
        reader.join(timeout=10)
    if killed is None and process.returncode < 0:
        killed = f"killed: signal {-process.returncode}"
    status = killed or ("ok" if process.returncode == 0 else "failed")
    tracker.finish(ended, "killed" if killed else "failed")
    summary = None
    if process.returncode == 0:
        try:
            summary = _brief(json.loads("".join(stdout)))
        except json.JSONDecodeError:
            summary = None
    return {
        "exit_code": process.returncode,
        "status": status,
        "wall_s": ended - started,
        "peak_rss_bytes": peak,
        "max_process_rss_bytes": usage.ru_maxrss * 1024,
        **tracker.result(),
        "summary": summary,
        "stderr_tail": list(tail),
    }


def _shards(root: Path) -> dict[str, int]:
    """TFRecord files per split that the run's ImageExampleGen wrote."""
    found: dict[str, int] = {}
    for split_dir in sorted(root.glob("pipeline/ImageExampleGen/examples/*/Split-*")):
        found[split_dir.name.removeprefix("Split-")] = len(list(split_dir.glob("*.gz")))
    return found


def _image_folder(work: Path, n: int, image_size: int) -> Path:
    folder = work / "images" / f"n{n}-{image_size}px"
    if len(list(folder.glob("class_*/*.jpg"))) != n:
        write_jpeg_classes(folder, n, image_size, CLASSES)
    return folder


def run_size(
    n: int,
    work: Path,
    image_size: int,
    epochs: int,
    poll: float,
    memory_limit: float | None,
    changes: dict | None = None,
) -> dict:
    """Generates (or reuses) N images and measures one fresh ``backbone-reg run`` on them."""
    images = _image_folder(work, n, image_size)
    root = work / "runs" / f"n{n}-{image_size}px-{time.strftime('%Y%m%d-%H%M%S')}"
    root.mkdir(parents=True)
    config = {**user_config(n, images, root, image_size, epochs), **(changes or {})}
    config_path = root / "config.json"
    config_path.write_text(json.dumps(config, indent=2))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = measure_run([CLI, "run", "--json", "--config", str(config_path)], env, poll, memory_limit)
    return {"images": n, "root": str(root), "shards": _shards(root), **run}


def _per_image(run: dict, node: str) -> float | None:
    step = run["steps"].get(node)
    if not step or step["status"] != "completed" or not step["seconds"]:
        return None
    return step["seconds"] / run["images"]


def _marginal(a: dict, b: dict, node: str) -> float | None:
    """Seconds per extra image of ``node`` from run ``a`` to the larger run ``b``."""
    if _per_image(a, node) is None or _per_image(b, node) is None:
        return None
    return (b["steps"][node]["seconds"] - a["steps"][node]["seconds"]) / (b["images"] - a["images"])


def verdicts(runs: list[dict]) -> dict:
    """The two targets of the module docstring, from the runs in increasing N."""
    runs = sorted(runs, key=lambda r: r["images"])
    small, large = runs[0], runs[-1]
    memory: dict = {"target": MEMORY_TARGET, "ratio": None, "met": None}
    if len(runs) > 1 and small["status"] == "ok" and large["status"] == "ok":
        memory["ratio"] = large["peak_rss_bytes"] / small["peak_rss_bytes"]
        memory["met"] = memory["ratio"] <= MEMORY_TARGET
    elif len(runs) > 1:
        memory["met"] = False  # a run that did not finish (e.g. out of memory) misses it
        memory["why"] = (
            f"N={large['images']}: {large['status']}; N={small['images']}: " + small["status"]
        )
    linear: dict = {}
    pairs = list(zip(runs, runs[1:], strict=False))
    for node in DATA_STEPS:
        marginals = [_marginal(a, b, node) for a, b in pairs]
        entry = {"marginal_s_per_image": marginals, "ratio": None, "met": None}
        if len(marginals) < 2 or None in marginals:
            entry["why"] = "needs 3 sizes with the step completed"
        else:
            grew = [
                m * (b["images"] - a["images"]) for m, (a, b) in zip(marginals, pairs, strict=True)
            ]
            measurable = [i for i, g in enumerate(grew[:-1]) if g >= RESOLUTION_S]
            if not measurable:
                (a, b), seconds = pairs[0], grew[0]
                entry["why"] = (
                    f"below resolution: the step grew {seconds:.1f} s from N={a['images']} to "
                    f"N={b['images']} (< {RESOLUTION_S:.0f} s); needs a larger N"
                )
            else:
                first = measurable[0]
                entry["reference"] = {
                    "from": pairs[first][0]["images"],
                    "to": pairs[first][1]["images"],
                }
                entry["ratio"] = marginals[-1] / marginals[first]
                entry["met"] = entry["ratio"] <= LINEAR_TARGET
        linear[node] = entry
    return {"memory": memory, "linear": linear}


def _reference(entry: dict, smallest: int) -> str:
    """' (vs 2000->8000)' when the ratio's reference is not the first pair of sizes."""
    reference = entry.get("reference")
    if not reference or reference["from"] == smallest:
        return ""
    return f" (vs {reference['from']}->{reference['to']})"


def _fmt_gb(value: int | None) -> str:
    return "-" if not value else f"{value / _GB:.2f}"


def markdown(result: dict) -> str:
    runs = sorted(result["runs"], key=lambda r: r["images"])
    nodes = list(dict.fromkeys(node for run in runs for node in run["steps"]))
    header = ["N", "status", "wall", "peak RSS (tree)", "largest process", "shards"]
    overview = [
        [
            str(run["images"]),
            run["status"],
            f"{run['wall_s']:.0f} s",
            f"{_fmt_gb(run['peak_rss_bytes'])} GB",
            f"{_fmt_gb(run['max_process_rss_bytes'])} GB",
            ", ".join(f"{k} {v}" for k, v in run["shards"].items()) or "-",
        ]
        for run in runs
    ]

    def step_cell(run: dict, node: str) -> str:
        step = run["steps"].get(node)
        if step is None:
            return "not reached"
        seconds = "-" if step["seconds"] is None else f"{step['seconds']:.1f} s"
        note = "" if step["status"] == "completed" else f" ({step['status']})"
        peak, start = step["peak_rss_bytes"], step.get("start_rss_bytes")
        grew = f" (+{(peak - start) / _GB:.2f})" if peak and start is not None else ""
        return f"{seconds}, {_fmt_gb(peak)} GB{grew}{note}"

    steps = [[node] + [step_cell(run, node) for run in runs] for node in nodes]
    checks = result["verdicts"]
    memory = checks["memory"]
    memory_line = (
        f"peak RSS at N={runs[-1]['images']} / N={runs[0]['images']}: "
        + (f"{memory['ratio']:.2f}x" if memory["ratio"] is not None else memory.get("why", "n/a"))
        + f" (target <= {MEMORY_TARGET}x): "
        + ("n/a" if memory["met"] is None else verdict(memory["met"]))
    )
    linear_rows = []
    for node, entry in checks["linear"].items():
        marginals = ", ".join(
            "-" if m is None else f"{m * 1e3:.1f}" for m in entry["marginal_s_per_image"]
        )
        per_image = ", ".join(
            "-" if _per_image(run, node) is None else f"{_per_image(run, node) * 1e3:.1f}"
            for run in runs
        )
        linear_rows.append(
            [
                node,
                per_image,
                marginals or "-",
                "-"
                if entry["ratio"] is None
                else f"{entry['ratio']:.2f}x" + _reference(entry, runs[0]["images"]),
                f"n/a ({entry['why']})" if entry["met"] is None else verdict(entry["met"]),
            ]
        )
    return "\n".join(
        [
            "# Scale benchmark",
            "",
            f"Measured {result['measured']} on: {result['machine']}. {result['note']}",
            "",
            f"Config: {result['config_description']}",
            "",
            table(header, overview),
            "",
            "Per step: wall time; peak RSS of the process tree while the step ran, in GB, and "
            "(+growth) over its first sample. Every step runs in the command's process (the "
            "local runner), so a step starts from what the steps before it kept. '-': the step "
            "was shorter than the sampling period.",
            "",
            table(["step"] + [f"N={run['images']}" for run in runs], steps),
            "",
            f"**Memory**: {memory_line}",
            "",
            "**Time per image** of the steps that read the data, ms per image at each N, and "
            f"marginal ms per extra image between successive sizes (target: the last <= "
            f"{LINEAR_TARGET}x the first, a linear total; the first whose step time grew by "
            f"{RESOLUTION_S:.0f} s or more, when the step hardly moved between the smallest sizes)",
            "",
            table(
                ["step", "ms/image at each N", "marginal ms/image", "ratio", "verdict"],
                linear_rows,
            ),
            "",
            "![peak RSS and time per image against N](scale.png)",
            "",
        ]
    )


def plot(result: dict, path: Path) -> None:
    """Peak RSS (whole run and per data step) and ms per image per data step, against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(result["runs"], key=lambda r: r["images"])
    sizes = [run["images"] for run in runs]
    fig, (memory_ax, time_ax) = plt.subplots(1, 2, figsize=(10, 4))
    memory_ax.plot(sizes, [run["peak_rss_bytes"] / _GB for run in runs], "o-k", label="whole run")
    for node in DATA_STEPS:
        values = [(run["steps"].get(node) or {}).get("peak_rss_bytes") for run in runs]
        points = [(n, v / _GB) for n, v in zip(sizes, values, strict=True) if v]
        if points:
            memory_ax.plot(*zip(*points, strict=True), "o--", label=node)
        per_image = [(n, _per_image(run, node)) for n, run in zip(sizes, runs, strict=True)]
        points = [(n, v * 1e3) for n, v in per_image if v is not None]
        if points:
            time_ax.plot(*zip(*points, strict=True), "o-", label=node)
    memory_ax.axhline(
        runs[0]["peak_rss_bytes"] * MEMORY_TARGET / _GB,
        color="grey",
        linestyle=":",
        label=f"{MEMORY_TARGET}x smallest N",
    )
    for run in runs:
        if run["status"] != "ok":
            memory_ax.annotate(run["status"][:40], (run["images"], run["peak_rss_bytes"] / _GB))
    memory_ax.set(xlabel="images (N)", ylabel="peak RSS (GB)", title="Peak resident memory")
    for ax in (memory_ax, time_ax):
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
    time_ax.set(xlabel="images (N)", ylabel="ms per image", title="Step time per image")
    for ax in (memory_ax, time_ax):
        ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"backbone-reg run, {result['config_description']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="N values, comma-separated."
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--poll", type=float, default=0.5, help="RSS sampling period (s).")
    parser.add_argument(
        "--memory-limit-gb",
        type=float,
        default=18.0,
        help="Kill a run whose process tree exceeds this (0: no limit).",
    )
    parser.add_argument(
        "--config-json",
        default="{}",
        help="Config keys to change for every run, e.g. '{\"shards_per_split\": 2}'.",
    )
    parser.add_argument("--output-dir", type=Path, default=HERE)
    parser.add_argument("--work-dir", type=Path, help="Keep images and runs here.")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    changes = json.loads(args.config_json)
    described = (
        f"{args.image_size}x{args.image_size} JPEGs in {CLASSES} classes, MobileNetV2 "
        f"alpha 0.35 at {args.image_size}, weights none, {args.epochs} epoch(s), "
        f"other settings default{f', plus {changes}' if changes else ''}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = args.work_dir or Path(tmp)
        runs = []
        for n in sizes:
            run = run_size(
                n, work, args.image_size, args.epochs, args.poll, args.memory_limit_gb, changes
            )
            print(
                f"N={n}: {run['status']}, {run['wall_s']:.0f} s, peak RSS "
                f"{_fmt_gb(run['peak_rss_bytes'])} GB",
                file=sys.stderr,
            )
            runs.append(run)
    result = {
        "measured": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine.describe(),
        "note": "Runs one after another; the machine may be shared: compare shapes, not seconds.",
        "config_description": described,
        "sizes": sizes,
        "runs": runs,
    }
    result["verdicts"] = verdicts(runs)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.output_dir / "scale.md").write_text(markdown(result))
    plot(result, args.output_dir / "scale.png")
    return result


if __name__ == "__main__":
    main()

"""`backbone_regularizer.pipeline.cli.console.Console`: the command's lines on the console,
everything else in the log.

The descriptor-level redirection is checked in a child process (pytest owns this one's
descriptors): Python prints, logging, warnings, raw writes to fd 2 (what TensorFlow's C++
logging does) and a child process (what Beam's workers are) must reach the log once and
never the console.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from backbone_regularizer.pipeline.cli.console import Console, format_step, log_path
from backbone_regularizer.pipeline.trainer.progress import CONSOLE_FD_ENV

CHILD = textwrap.dedent(
    """
    import logging, os, subprocess, sys, warnings
    from backbone_regularizer.pipeline.cli.console import Console

    verbose = sys.argv[2] == "verbose"
    progress_err = sys.argv[2] == "json"
    with Console(sys.argv[1], verbose=verbose, progress=True, progress_err=progress_err) as console:
        console.echo("step one started")
        print("library print")
        logging.getLogger("tfx").info("library log")
        warnings.warn("library warning")
        os.write(2, b"C++ log line\\n")
        subprocess.run([sys.executable, "-c", "print('worker output')"], check=True)
        fd = int(os.environ["BACKBONE_REG_CONSOLE_FD"]) if not verbose else 1
        if not verbose:
            os.write(fd, b"progress line\\n")
        console.echo("step one completed")
    print("after the command")
    """
)
LIBRARY = ["library print", "library log", "library warning", "C++ log line", "worker output"]


def run_child(tmp_path, mode: str) -> tuple[subprocess.CompletedProcess, str]:
    log = tmp_path / "logs" / "run.log"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(log), mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done, log.read_text()


def test_the_console_shows_only_the_command_lines_and_the_log_has_everything_once(tmp_path):
    done, log = run_child(tmp_path, "quiet")
    assert done.stdout.splitlines() == [
        "step one started",
        "progress line",
        "step one completed",
        "after the command",
    ]
    assert done.stderr == ""
    for line in [*LIBRARY, "step one started", "step one completed"]:
        assert log.count(line) == 1, line
    assert log.index("step one started") < log.index("library print")
    assert log.index("worker output") < log.index("step one completed")
    assert "after the command" not in log


def test_with_json_the_progress_line_goes_to_stderr(tmp_path):
    done, _ = run_child(tmp_path, "json")
    assert "progress line" not in done.stdout
    assert done.stderr.splitlines() == ["progress line"]


def test_verbose_streams_the_log_to_stderr(tmp_path):
    done, log = run_child(tmp_path, "verbose")
    assert done.stdout.splitlines() == [
        "step one started",
        "step one completed",
        "after the command",
    ]
    for line in LIBRARY:
        assert done.stderr.count(line) == 1, line
        assert log.count(line) == 1, line
    assert "step one started" not in done.stderr  # said once, on stdout


def test_without_descriptors_python_streams_go_to_the_log(tmp_path, capsys):
    import io

    path = tmp_path / "logs" / "x.log"
    out = io.StringIO()
    saved = sys.stdout
    sys.stdout = out  # like click's CliRunner: no file descriptor
    try:
        with Console(str(path)) as console:
            print("library print")
            console.echo("own line")
    finally:
        sys.stdout = saved
    assert out.getvalue() == "own line\n"
    assert path.read_text().splitlines() == ["library print", "own line"]


FAILING = textwrap.dedent(
    """
    import sys
    from backbone_regularizer.pipeline.cli.console import Console

    with Console(sys.argv[1]) as console:
        try:
            raise RuntimeError("Expected fixed statistics. Received: 3 changed")
        except RuntimeError as error:
            console.fail(error, step="Trainer")
    """
)


def test_fail_names_the_step_the_error_and_the_log(tmp_path):
    path = tmp_path / "logs" / "run.log"
    done = subprocess.run(
        [sys.executable, "-c", FAILING, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: step Trainer failed: RuntimeError: Expected fixed statistics. Received: 3 changed",
        f"log: {path}",
    ]
    log = path.read_text()
    assert log.startswith("Traceback (most recent call last)")
    assert "RuntimeError: Expected fixed statistics" in log


def test_an_uncaught_error_is_reported_and_exits_1(tmp_path):
    path = tmp_path / "logs" / "run.log"
    child = (
        "import sys\nfrom backbone_regularizer.pipeline.cli.console import Console\n"
        "with Console(sys.argv[1]):\n    print('before')\n    {}['missing']\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert (done.stdout, done.stderr.splitlines()) == (
        "",
        ["error: KeyError: 'missing'", f"log: {path}"],
    )
    log = path.read_text()
    assert log.startswith("before\nTraceback (most recent call last)") and "KeyError" in log


def test_the_console_descriptor_is_left_only_while_the_command_runs(tmp_path, monkeypatch):
    monkeypatch.delenv(CONSOLE_FD_ENV, raising=False)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os\nfrom backbone_regularizer.pipeline.cli.console import Console\n"
            f"with Console({str(tmp_path / 'a.log')!r}, progress=True):\n"
            f"    inside = os.environ.get({CONSOLE_FD_ENV!r})\n"
            f"print(bool(inside), os.environ.get({CONSOLE_FD_ENV!r}))\n",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == ["True", "None"]


def test_step_lines():
    assert format_step("Trainer", "started", 6, 10) == "[ 6/10] Trainer                started"
    assert format_step("Pusher", "cached", 10, 10, 0.04) == (
        "[10/10] Pusher                 cached        0.0 s"
    )


def test_log_path_names_the_command_and_utc_time(tmp_path):
    import datetime

    when = datetime.datetime(2026, 11, 29, 13, 5, 7, tzinfo=datetime.timezone.utc)
    assert log_path(str(tmp_path), "run", when) == str(
        tmp_path / "logs" / "run-20261129T130507.log"
    )

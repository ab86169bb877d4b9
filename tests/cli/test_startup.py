"""Commands that need no TensorFlow do not import it (nor TFX, which imports TensorFlow).

Each command runs in a fresh interpreter (this one has imported TensorFlow long ago) through
the same ``backbone_regularizer.pipeline.cli:main`` the console script calls; the child reports
``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "tfx", "keras", "tensorflow_model_analysis", "apache_beam")
CHILD = f"""
import json, sys
from backbone_regularizer.pipeline.cli.main import main
try:
    main.main(sys.argv[1:], prog_name="backbone-reg")
except SystemExit as exit:
    code = exit.code
print(json.dumps({{"code": code, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def run_cli(*args: str, cwd=None) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=True,
    )
    *output, report = done.stdout.splitlines()
    return json.loads(report), "\n".join(output) + done.stderr


@pytest.mark.parametrize(
    "args", [["--help"], ["run", "--help"], ["lineage", "--help"], ["compile", "--help"]]
)
def test_help_imports_no_tensorflow(args):
    report, output = run_cli(*args)
    assert report == {"code": 0, "heavy": []}
    assert "Usage: backbone-reg" in output


def test_schedule_checks_its_arguments_without_tensorflow(tmp_path):
    missing = tmp_path / "pipeline.json"
    report, output = run_cli(
        "schedule", "--cron", "@daily", "--job-name", "nightly", "--package", str(missing)
    )
    assert report == {"code": 1, "heavy": []}
    assert str(missing) in output

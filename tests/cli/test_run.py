"""`backbone-reg run` through click's CliRunner: a real pipeline run that fails in its first
step (no images), and what the console says about it."""

from __future__ import annotations

import json

from click.testing import CliRunner

from backbone_regularizer.pipeline.cli.console import format_step
from backbone_regularizer.pipeline.cli.main import main
from tests.pipeline.test_pipeline_e2e import reduced_config


def test_a_failed_step_is_named_with_its_error_and_the_log(tmp_path):
    config = reduced_config(tmp_path)  # data_root: an empty folder, no span-1
    (tmp_path / "images").mkdir()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    result = CliRunner().invoke(main, ["run", "--config", str(path)])
    assert result.exit_code == 1, result.output
    [log] = (tmp_path / "run" / "logs").iterdir()
    lines = result.output.splitlines()
    assert lines[:2] == [f"running pipeline e2e-test (root {config.root})", f"log: {log}"]
    steps, (error, last) = lines[2:-2], lines[-2:]
    # BackboneLoader comes first and runs; the pipeline stops at the failed step.
    assert steps[:3] == [
        format_step("BackboneLoader", "started", 1, 10),
        steps[1],
        format_step("ImageExampleGen", "started", 2, 10),
    ]
    assert steps[1].startswith(format_step("BackboneLoader", "completed", 1, 10))
    assert steps[3].startswith(format_step("ImageExampleGen", "failed", 2, 10))
    assert len(steps) == 4
    assert error.startswith("error: step ImageExampleGen failed: ")
    assert last == f"log: {log}"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text  # the details are in the log only
    assert "Traceback" not in result.output

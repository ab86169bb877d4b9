"""`compile` and `schedule` through click's CliRunner; kfp.Client is a recording fake."""

from __future__ import annotations

import json
from types import SimpleNamespace

import kfp
import pytest
from click.testing import CliRunner
from kfp.client import client as kfp_client

from backbone_regularizer.pipeline.cli.kubeflow import compile_command, schedule_command
from tests.kubeflow import pod
from tests.kubeflow.configs import IMAGE, ROOT, cluster_config


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "kfp.json"
    path.write_text(json.dumps(cluster_config().to_dict()))
    return path


def compile_args(config_file, output, *extra):
    return ["--config", str(config_file), "--image", IMAGE, "--output", str(output), *extra]


def test_compile_writes_the_job_and_prints_a_summary(config_file, tmp_path):
    output = tmp_path / "out" / "pipeline.json"
    args = compile_args(config_file, output, "--pipeline-root", ROOT, "--gpus", "2")
    result = CliRunner().invoke(compile_command, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"wrote {output}",
        f"backbone-regularizer-kfp: 10 steps, image {IMAGE}, root {ROOT}; "
        "Trainer: 2 x nvidia.com/gpu, 8.0 CPU, 32.0 GB; retries 2 (Trainer 5), backoff 60s x2",
    ]
    job = json.loads(output.read_text())
    assert pod.container(job, "Trainer")["resources"]["accelerator"]["count"] == "2"


def test_compile_for_vertex_with_an_accelerator_name(config_file, tmp_path):
    output = tmp_path / "pipeline.json"
    extra = ("--gpu-type", "NVIDIA_L4", "--platform", "vertex")
    result = CliRunner().invoke(compile_command, compile_args(config_file, output, *extra))
    assert result.exit_code == 0, result.output
    assert "Trainer: 1 x NVIDIA_L4" in result.output
    assert "root gs://my-bucket/backbone-regularizer/pipeline;" in result.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--gpus", "-1"), "error: Invalid value for argument `gpus`. Expected an int >= 0."),
        (("--gpu-type", "NVIDIA_TESLA_T4"), "need platform='vertex'"),
        (("--pipeline-root", "/tmp/root"), "Expected a URI every pod can reach"),
    ],
)
def test_compile_errors_exit_1_and_write_nothing(config_file, tmp_path, extra, message):
    output = tmp_path / "pipeline.json"
    result = CliRunner().invoke(compile_command, compile_args(config_file, output, *extra))
    assert result.exit_code == 1
    assert message in result.output
    assert not output.exists()


def test_compile_without_config_refuses_the_local_demo_paths(tmp_path):
    result = CliRunner().invoke(
        compile_command, ["--image", IMAGE, "--output", str(tmp_path / "p.json")]
    )
    assert result.exit_code == 1
    assert "Invalid value for `pipeline_root` on Kubeflow" in result.output


def test_compile_requires_an_image(config_file, tmp_path):
    result = CliRunner().invoke(compile_command, ["--config", str(config_file)])
    assert result.exit_code == 2
    assert "Missing option '--image'" in result.output


class FakeClient:
    """Records what schedule sends; parses the package the way kfp 2.5's client does."""

    calls: list = []

    def __init__(self, **kwargs):
        self.calls.append(("Client", kwargs))

    def create_experiment(self, **kwargs):
        self.calls.append(("create_experiment", kwargs))
        return SimpleNamespace(experiment_id="exp-123")

    def create_recurring_run(self, **kwargs):
        doc = kfp_client._extract_pipeline_yaml(kwargs["pipeline_package_path"])
        self.calls.append(("create_recurring_run", kwargs, doc.pipeline_spec))
        return SimpleNamespace(recurring_run_id="rr-456")


@pytest.fixture
def fake_kfp(monkeypatch):
    FakeClient.calls = []
    monkeypatch.setattr(kfp, "Client", FakeClient)
    return FakeClient.calls


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_schedule_creates_a_recurring_run_from_the_package(config_file, tmp_path, fake_kfp, suffix):
    package = tmp_path / f"pipeline{suffix}"
    result = CliRunner().invoke(compile_command, compile_args(config_file, package))
    assert result.exit_code == 0, result.output
    args = ["--host", "http://kfp.example:8080", "--package", str(package)]
    args += ["--cron", "0 0 3 * * *", "--experiment", "fine-tuning", "--job-name", "nightly"]
    args += ["--namespace", "team-vision"]
    result = CliRunner().invoke(schedule_command, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "scheduled 'nightly' (0 0 3 * * *) in experiment 'fine-tuning': rr-456\n"
    )
    (client, experiment, (name, recurring, spec)) = fake_kfp
    assert client == ("Client", {"host": "http://kfp.example:8080"})
    assert experiment == ("create_experiment", {"name": "fine-tuning", "namespace": "team-vision"})
    assert name == "create_recurring_run"
    package_path = recurring.pop("pipeline_package_path")
    assert package_path.endswith(".yaml")  # kfp 2.5 refuses .json packages
    assert recurring == {
        "experiment_id": "exp-123",
        "job_name": "nightly",
        "cron_expression": "0 0 3 * * *",
        "pipeline_root": "gs://my-bucket/backbone-regularizer/pipeline",
        "max_concurrency": 1,
        "no_catchup": True,
        "enabled": True,
    }
    assert spec.pipeline_info.name == "backbone-regularizer-kfp"
    assert set(spec.root.dag.tasks) >= {"Trainer", "latest_pushed_model", "ImageExampleGen"}
    trainer = spec.deployment_spec["executors"]["Trainer_executor"]["container"]
    assert trainer["resources"]["accelerator"]["type"] == "nvidia.com/gpu"


@pytest.mark.parametrize(
    "cron, message",
    [
        ("0 3 * * *", "Expected six fields with seconds first"),
        ("", "Received: cron=''"),
    ],
)
def test_schedule_refuses_a_unix_cron_before_connecting(tmp_path, fake_kfp, cron, message):
    package = tmp_path / "pipeline.json"
    package.write_text("{}")
    args = ["--package", str(package), "--cron", cron, "--job-name", "nightly"]
    result = CliRunner().invoke(schedule_command, args)
    assert result.exit_code == 1
    assert message in result.output
    assert fake_kfp == []


def test_schedule_accepts_a_cron_descriptor(config_file, tmp_path, fake_kfp):
    package = tmp_path / "pipeline.json"
    assert CliRunner().invoke(compile_command, compile_args(config_file, package)).exit_code == 0
    args = ["--package", str(package), "--cron", "@daily", "--job-name", "daily"]
    result = CliRunner().invoke(schedule_command, args)
    assert result.exit_code == 0, result.output
    assert fake_kfp[0] == ("Client", {"host": None})
    assert fake_kfp[2][1]["cron_expression"] == "@daily"


def test_schedule_refuses_a_file_that_is_not_a_compiled_pipeline(tmp_path, fake_kfp):
    package = tmp_path / "pipeline.json"
    package.write_text(json.dumps({"displayName": "x"}))
    args = ["--package", str(package), "--cron", "@daily", "--job-name", "daily"]
    result = CliRunner().invoke(schedule_command, args)
    assert result.exit_code == 1
    assert "Expected a compiled pipeline (PipelineJob JSON or PipelineSpec YAML)" in result.output
    assert fake_kfp == []


def test_schedule_reports_a_missing_package(tmp_path, fake_kfp):
    args = ["--package", str(tmp_path / "nope.json"), "--cron", "@daily", "--job-name", "d"]
    result = CliRunner().invoke(schedule_command, args)
    assert result.exit_code == 1
    assert "Expected a compiled pipeline file. Received:" in result.output

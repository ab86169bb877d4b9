"""`compile` and `schedule` with every location on s3:// (MinIO): what each step gets.

Credentials come from a Kubernetes secret through KFP's platform spec (the second YAML
document, read here by kfp 2.5's own client code); endpoint, region and TLS switches are in
each container's env. The key pair in the compiling shell must not reach the file.
"""

from __future__ import annotations

import json

import kfp
import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import json_format
from kfp.client import client as kfp_client

from backbone_regularizer.pipeline.cli.kubeflow import compile_command, schedule_command
from backbone_regularizer.pipeline.config import BackboneConfig
from tests.cli.test_kubeflow import FakeClient
from tests.kubeflow.configs import IMAGE, cluster_config

SECRET = "shell-secret-0123456789abcdefghij"
KEY_ID = "AKIASHELLKEYID000000"
POD_ENDPOINT = "http://minio-service.kubeflow:9000"


def minio_config(**changes):
    values = dict(
        root="s3://mlpipeline/backbone-regularizer",
        data_root="s3://datasets/images",
        backbone=BackboneConfig(weights="s3://models/source.weights.h5"),
        push_destination="s3://models/serving",
        beam_args=("--direct_running_mode=in_memory",),
    )
    values.update(changes)
    return cluster_config(**values)


@pytest.fixture
def shell(monkeypatch):
    """A laptop that reaches MinIO through a port-forward, with the key pair exported."""
    for name, value in {
        "S3_ENDPOINT": "http://localhost:9000",
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
        "S3_USE_HTTPS": "0",
        "S3_VERIFY_SSL": "0",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


def compile_to(tmp_path, name, *extra):
    config = tmp_path / "minio.json"
    config.write_text(json.dumps(minio_config().to_dict()))
    output = tmp_path / name
    args = ["--config", str(config), "--image", IMAGE, "--output", str(output), *extra]
    result = CliRunner().invoke(compile_command, args)
    assert result.exit_code == 0, result.output
    return output, result.stdout


def test_every_step_gets_the_endpoint_and_the_secret_never_the_key(shell, tmp_path):
    output, stdout = compile_to(tmp_path, "pipeline.yaml", "--s3-endpoint", POD_ENDPOINT)
    text = output.read_text()
    assert SECRET not in text and KEY_ID not in text and "localhost" not in text
    spec_doc, platform_doc = yaml.safe_load_all(text)
    assert spec_doc["defaultPipelineRoot"] == "s3://mlpipeline/backbone-regularizer/pipeline"
    executors = spec_doc["deploymentSpec"]["executors"]
    assert len(executors) == 10
    for executor in executors.values():
        assert executor["container"]["env"] == [
            {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
            {"name": "AWS_ENDPOINT_URL", "value": POD_ENDPOINT},
            {"name": "AWS_REGION", "value": "us-east-1"},
            {"name": "S3_ENDPOINT", "value": POD_ENDPOINT},
            {"name": "S3_USE_HTTPS", "value": "0"},
            {"name": "S3_VERIFY_SSL", "value": "0"},
        ]
    # kfp's client reads the package as the KFP API server will: spec, then platform spec.
    doc = kfp_client._extract_pipeline_yaml(str(output))
    platform = json_format.MessageToDict(doc.platform_spec)
    assert platform == platform_doc
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(k8s) == set(executors)
    assert {json.dumps(v, sort_keys=True) for v in k8s.values()} == {
        json.dumps(
            {
                "secretAsEnv": [
                    {
                        "keyToEnv": [
                            {"envVar": "AWS_ACCESS_KEY_ID", "secretKey": "accesskey"},
                            {"envVar": "AWS_SECRET_ACCESS_KEY", "secretKey": "secretkey"},
                        ],
                        "secretName": "mlpipeline-minio-artifact",
                    }
                ]
            },
            sort_keys=True,
        )
    }
    assert stdout.splitlines()[-1] == (
        f"s3: 10 steps get endpoint {POD_ENDPOINT} and secret 'mlpipeline-minio-artifact' "
        "(AWS_ACCESS_KEY_ID <- accesskey, AWS_SECRET_ACCESS_KEY <- secretkey)"
    )


def test_another_secret_and_the_shell_endpoint(shell, tmp_path):
    output, _ = compile_to(
        tmp_path, "pipeline.json", "--s3-secret", "team-s3", "--s3-secret-keys", "id,key"
    )
    job = json.loads(output.read_text())
    assert SECRET not in output.read_text()
    k8s = job["platformSpec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    secret = k8s["Trainer_executor"]["secretAsEnv"][0]
    assert secret["secretName"] == "team-s3"
    assert [k["secretKey"] for k in secret["keyToEnv"]] == ["id", "key"]
    trainer = job["pipelineSpec"]["deploymentSpec"]["executors"]["Trainer_executor"]
    assert {"name": "S3_ENDPOINT", "value": "http://localhost:9000"} in trainer["container"]["env"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_schedule_keeps_the_secret_wiring(shell, tmp_path, monkeypatch, suffix):
    FakeClient.calls = []
    monkeypatch.setattr(kfp, "Client", FakeClient)
    recorded = []
    original = FakeClient.create_recurring_run

    def record(self, **kwargs):
        recorded.append(kfp_client._extract_pipeline_yaml(kwargs["pipeline_package_path"]))
        return original(self, **kwargs)

    monkeypatch.setattr(FakeClient, "create_recurring_run", record)
    output, _ = compile_to(tmp_path, f"pipeline{suffix}", "--s3-endpoint", POD_ENDPOINT)
    args = ["--package", str(output), "--cron", "@daily", "--job-name", "nightly"]
    result = CliRunner().invoke(schedule_command, args)
    assert result.exit_code == 0, result.output
    platform = json_format.MessageToDict(recorded[0].platform_spec)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["Trainer_executor"]["secretAsEnv"][0]["secretName"] == (
        "mlpipeline-minio-artifact"
    )
    assert FakeClient.calls[-1][1]["pipeline_root"] == (
        "s3://mlpipeline/backbone-regularizer/pipeline"
    )


def test_gs_pipelines_get_no_s3_wiring(tmp_path):
    config = tmp_path / "gs.json"
    config.write_text(json.dumps(cluster_config().to_dict()))
    output = tmp_path / "pipeline.yaml"
    args = ["--config", str(config), "--image", IMAGE, "--output", str(output)]
    assert CliRunner().invoke(compile_command, args).exit_code == 0
    docs = list(yaml.safe_load_all(output.read_text()))
    assert len(docs) == 1
    assert all("env" not in e["container"] for e in docs[0]["deploymentSpec"]["executors"].values())


def test_bad_secret_keys_are_refused(shell, tmp_path):
    config = tmp_path / "minio.json"
    config.write_text(json.dumps(minio_config().to_dict()))
    output = tmp_path / "p.yaml"
    args = ["--config", str(config), "--image", IMAGE, "--output", str(output)]
    result = CliRunner().invoke(compile_command, [*args, "--s3-secret-keys", "onlyone"])
    assert result.exit_code == 1
    assert "Expected two key names (access key id, secret access key)" in result.output
    assert not output.exists()

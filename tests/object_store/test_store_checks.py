"""object_store against a real S3 server (moto_server): settings, fail-fast checks, exit codes.

Nothing here uses ``s3://`` through tensorflow-io in the pytest process: after any such use the
process aborts at exit with 134 (tensorflow/io#2039), which would fail the whole test run.
Those uses run in subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from backbone_regularizer.pipeline.object_store import (
    ObjectStoreError,
    check_uris,
    s3_environment,
    with_beam_plugin,
)
from tests.s3_server import free_port


def test_either_endpoint_spelling_sets_both_for_tensorflow_io_and_boto3():
    derived = s3_environment({"S3_ENDPOINT": "minio.local:9000", "S3_USE_HTTPS": "0"})
    assert derived == {
        "S3_ENDPOINT": "http://minio.local:9000",
        "AWS_ENDPOINT_URL": "http://minio.local:9000",
        "S3_USE_HTTPS": "0",
    }
    derived = s3_environment({"AWS_ENDPOINT_URL": "https://s3.example.com/", "AWS_REGION": "eu"})
    assert derived == {
        "S3_ENDPOINT": "https://s3.example.com",
        "AWS_ENDPOINT_URL": "https://s3.example.com",
        "S3_USE_HTTPS": "1",
        "AWS_REGION": "eu",
        "AWS_DEFAULT_REGION": "eu",
    }
    assert s3_environment({}) == {}


def test_contradicting_endpoints_are_refused_by_name():
    with pytest.raises(ValueError) as raised:
        s3_environment({"S3_ENDPOINT": "http://a:9000", "AWS_ENDPOINT_URL": "http://b:9000"})
    assert str(raised.value) == (
        "Expected S3_ENDPOINT and AWS_ENDPOINT_URL to agree (they name the same setting). "
        "Received: S3_ENDPOINT='http://a:9000', AWS_ENDPOINT_URL='http://b:9000'"
    )


def test_beam_workers_import_tensorflow_io_only_for_s3():
    args = ["--direct_num_workers=1"]
    assert with_beam_plugin(args, ["/data", "gs://b/x"]) == args
    assert with_beam_plugin(args, ["s3://b/x", None]) == args + ["--beam_plugins=tensorflow_io"]


def test_an_existing_bucket_passes(s3_server):
    check_uris({"config.root": s3_server.uri("run"), "config.data_root": "/local"}, s3_server.env)


def test_a_missing_bucket_names_the_uri_and_the_cause(s3_server):
    with pytest.raises(ObjectStoreError) as raised:
        check_uris({"config.root": "s3://no-such-bucket/run"}, s3_server.env)
    assert str(raised.value) == (
        "The bucket does not exist (create it first) for config.root='s3://no-such-bucket/run' "
        f"(bucket 'no-such-bucket' at {s3_server.endpoint})."
    )


def test_a_wrong_secret_is_refused_and_not_repeated(s3_server):
    env = {**s3_server.env, "AWS_SECRET_ACCESS_KEY": "wrong-secret-value"}
    with pytest.raises(ObjectStoreError) as raised:
        check_uris({"config.root": s3_server.uri("run")}, env)
    message = str(raised.value)
    assert message.startswith("Access denied: the server rejected the credentials")
    assert f"config.root='{s3_server.uri('run')}'" in message
    assert "wrong-secret-value" not in message and s3_server.secret_access_key not in message


def test_no_credentials_say_which_variables(s3_server, monkeypatch, tmp_path):
    # boto3 would also look in ~/.aws: point it at an empty folder.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    env = {k: v for k, v in s3_server.env.items() if not k.startswith("AWS_") or k == "AWS_REGION"}
    with pytest.raises(ObjectStoreError, match="Expected AWS_ACCESS_KEY_ID and AWS_SECRET"):
        check_uris({"config.root": s3_server.uri("run")}, env)


def test_an_unreachable_endpoint_fails_in_seconds():
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {"S3_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    started = time.monotonic()
    with pytest.raises(ObjectStoreError) as raised:
        check_uris({"config.push_destination": "s3://models/serving"}, env)
    assert time.monotonic() - started < 30  # tensorflow-io alone retries for ~200 s
    assert str(raised.value).startswith(
        "Cannot reach the S3 endpoint for config.push_destination='s3://models/serving' "
        f"(bucket 'models' at {endpoint}). Expected a running S3 server"
    )


def test_skipping_tls_verification_is_refused_where_beam_would_verify():
    env = {"S3_ENDPOINT": "https://minio.local:9000", "S3_VERIFY_SSL": "0"}
    with pytest.raises(ObjectStoreError, match="Expected AWS_CA_BUNDLE"):
        check_uris({"root": "s3://bucket/run"}, env)


def test_a_kubeflow_step_fails_on_a_missing_bucket(s3_server, tmp_path):
    """``python -m backbone_regularizer.pipeline.kubeflow.entrypoint`` checks the ExecutorInput's
    buckets first."""
    executor_input = {
        "outputs": {
            "artifacts": {"examples": {"artifacts": [{"uri": "s3://missing-bucket/ex/1"}]}},
            "outputFile": str(tmp_path / "executor_output.json"),
        }
    }
    args = [
        "--executor_class_path",
        "backbone_regularizer.components.image_ingestion.executor.Executor",
    ]
    args += ["--json_serialized_invocation_args", json.dumps(executor_input)]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "backbone_regularizer.pipeline.kubeflow.entrypoint",
            "--example_gen_driver",
            *args,
        ],
        env={**os.environ, **s3_server.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert (
        "ObjectStoreError: The bucket does not exist (create it first) for "
        "outputs.examples[0]='s3://missing-bucket/ex/1'" in done.stderr
    )
    assert not (tmp_path / "executor_output.json").exists()


def test_a_uri_root_needs_a_local_metadata_file(tmp_path):
    from click.testing import CliRunner

    from backbone_regularizer.pipeline.cli.main import main
    from backbone_regularizer.pipeline.config import PipelineConfig

    config = PipelineConfig(root="s3://bucket/run", data_root="s3://bucket/images")
    path = tmp_path / "s3.json"
    path.write_text(json.dumps(config.to_dict()))
    result = CliRunner().invoke(main, ["run", "--config", str(path)])
    assert result.exit_code == 1
    assert (
        "error: Invalid config `metadata`. Expected a local sqlite file path when `root` is a "
        'URI (sqlite needs a local file), e.g. "runs/backbone-regularizer-demo/metadata.sqlite". '
        "Received: metadata=None"
    ) in result.output
    local = PipelineConfig(root="s3://bucket/run", metadata=str(tmp_path / "m.sqlite"))
    assert local.metadata_path == str(tmp_path / "m.sqlite")
    assert local.locations() == {
        "root": "s3://bucket/run",
        "data_root": os.path.abspath(local.data_root),
        "push_destination": "s3://bucket/run/serving",
        "backbone.keras_file": os.path.abspath(local.backbone.keras_file),  # the demo's
    }
    with pytest.raises(ValueError, match="Expected a local sqlite file path \\(not a URI\\)"):
        PipelineConfig(root="s3://bucket/run", metadata="s3://bucket/m.sqlite")

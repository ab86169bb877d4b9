"""KFP's retry policy in the compiled spec: every task, more for the Trainer, from the API and
the CLI. (kfp.local honouring it, with real kills: tests/kubeflow/test_kfp_local_retries.py.)"""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from backbone_regularizer.pipeline.cli.kubeflow import compile_command
from backbone_regularizer.pipeline.kubeflow import apply_kubeflow_fixes
from backbone_regularizer.pipeline.kubeflow.compile import compile_pipeline, describe
from backbone_regularizer.pipeline.kubeflow.retries import (
    RetryPolicy,
    describe_retries,
    is_trainer,
    set_retry_policy,
)
from tests.kubeflow import pod
from tests.kubeflow.configs import IMAGE, ROOT, cluster_config
from tests.pipeline.test_pipeline_e2e import NODES


def policy(retries: int, backoff: str = "60s", max_duration: str = "604800s") -> dict:
    return {
        "maxRetryCount": retries,
        "backoffDuration": backoff,
        "backoffFactor": 2.0,
        "backoffMaxDuration": max_duration,
    }


def retry_policies(job: dict) -> dict:
    return {
        name: task.get("retryPolicy")
        for name, task in job["pipelineSpec"]["root"]["dag"]["tasks"].items()
    }


def test_every_task_gets_retries_and_the_trainer_more(compiled):
    job, _ = compiled
    expected = dict.fromkeys(NODES, policy(2))
    expected["Trainer"] = policy(5)
    assert retry_policies(job) == expected
    # What KFP's backend and kfp.local parse: the spec's own proto.
    json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert describe(job).endswith("; retries 2 (Trainer 5), backoff 60s x2")


def test_retries_as_given_and_none(tmp_path):
    given = RetryPolicy(retries=1, trainer_retries=3, backoff_seconds=0, max_duration_seconds=90)
    job = compile_pipeline(cluster_config(), tmp_path / "p.yaml", IMAGE, ROOT, retries=given)
    expected = dict.fromkeys(NODES, policy(1, "0s", "90s"))
    expected["Trainer"] = policy(3, "0s", "90s")
    assert retry_policies(job) == expected
    written = yaml.safe_load((tmp_path / "p.yaml").read_text())  # the KFP upload format
    assert written["root"]["dag"]["tasks"]["Trainer"]["retryPolicy"] == policy(3, "0s", "90s")

    for off in (0, None, RetryPolicy(retries=0)):
        job = compile_pipeline(cluster_config(), tmp_path / "p.json", IMAGE, ROOT, retries=off)
        assert retry_policies(job) == dict.fromkeys(NODES)
        assert describe_retries(job) == "no retries"
    # An int is RetryPolicy(retries=n): the Trainer at least 5.
    job = compile_pipeline(cluster_config(), tmp_path / "p.json", IMAGE, ROOT, retries=7)
    assert {p["maxRetryCount"] for p in retry_policies(job).values()} == {7}
    assert describe_retries(job) == "retries 7, backoff 60s x2"


def test_apply_kubeflow_fixes_sets_them_on_a_users_own_job_by_executor(compiled):
    job, _ = compiled
    own = copy.deepcopy(job)
    for task in own["pipelineSpec"]["root"]["dag"]["tasks"].values():
        task.pop("retryPolicy")
    # Fixes already applied: the entrypoint is ours now; apply_kubeflow_fixes expects TFX's.
    unfixed = copy.deepcopy(own)
    for executor in unfixed["pipelineSpec"]["deploymentSpec"]["executors"].values():
        if "container" in executor:
            executor["container"]["command"] = [
                "python",
                "-m",
                "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
            ]
            executor["container"].pop("lifecycle", None)
    untouched = apply_kubeflow_fixes(copy.deepcopy(unfixed), ROOT)
    assert set(retry_policies(untouched).values()) == {None}  # retries=None: none added
    fixed = apply_kubeflow_fixes(unfixed, ROOT, retries=RetryPolicy(retries=1))
    counts = {name: p["maxRetryCount"] for name, p in retry_policies(fixed).items()}
    assert counts == {**dict.fromkeys(NODES, 1), "Trainer": 5}
    with pytest.raises(TypeError) as error:
        apply_kubeflow_fixes(own, ROOT, retries="3")
    assert str(error.value) == (
        "Expected `retries` to be a RetryPolicy, an int or None. Received: retries='3' (str)"
    )


def test_the_trainer_is_found_by_its_executor_whatever_its_id(compiled):
    job, _ = compiled
    trainer = pod.container(job, "Trainer")
    assert is_trainer(trainer)
    assert not is_trainer(pod.container(job, "Evaluator"))
    assert not is_trainer(None)  # an Importer has no container
    renamed = copy.deepcopy(job)
    tasks = renamed["pipelineSpec"]["root"]["dag"]["tasks"]
    tasks["fine_tune"] = tasks.pop("Trainer")
    set_retry_policy(renamed, RetryPolicy(retries=0, trainer_retries=4))
    assert tasks["fine_tune"]["retryPolicy"]["maxRetryCount"] == 4
    assert all("retryPolicy" not in t for n, t in tasks.items() if n != "fine_tune")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"retries": -1}, "Expected an int >= 0. Received: retries=-1"),
        ({"retries": True}, "Expected an int >= 0. Received: retries=True"),
        ({"trainer_retries": 1.5}, "Expected an int >= 0. Received: trainer_retries=1.5"),
        ({"backoff_seconds": -5}, "Expected an int >= 0. Received: backoff_seconds=-5"),
        ({"backoff_factor": 1.5}, "Expected an int >= 1. Received: backoff_factor=1.5"),
        ({"max_duration_seconds": 0}, "Expected an int >= 1. Received: max_duration_seconds=0"),
    ],
)
def test_policy_values_are_checked(kwargs, message):
    with pytest.raises(ValueError) as error:
        RetryPolicy(**kwargs)
    name = next(iter(kwargs))
    assert str(error.value) == f"Invalid value for argument `{name}`. {message}"


def test_cli_retries_options(tmp_path):
    config = tmp_path / "kfp.json"
    config.write_text(json.dumps(cluster_config().to_dict()))
    output = tmp_path / "pipeline.json"
    args = ["--config", str(config), "--image", IMAGE, "--output", str(output)]
    extra = ["--retries", "1", "--trainer-retries", "8", "--retry-backoff", "10"]
    result = CliRunner().invoke(compile_command, [*args, *extra, "--retry-max-duration", "3600"])
    assert result.exit_code == 0, result.output
    assert "; retries 1 (Trainer 8), backoff 10s x2" in result.stdout
    job = json.loads(output.read_text())
    assert retry_policies(job)["Trainer"] == policy(8, "10s", "3600s")
    assert retry_policies(job)["Pusher"] == policy(1, "10s", "3600s")

    result = CliRunner().invoke(compile_command, [*args, "--retries", "0"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].endswith("; no retries")

    output.unlink()
    result = CliRunner().invoke(compile_command, [*args, "--retries", "-1"])
    assert result.exit_code == 2
    assert "Invalid value for '--retries': -1 is not in the range x>=0." in result.output
    assert not output.exists()

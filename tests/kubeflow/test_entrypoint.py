"""The project entrypoint's input-type repair, checked with TFX's own ExecutorInput parser.

Each case is a type shape an orchestrator really sends (see tests/kubeflow/pod.py). The
repaired ExecutorInput goes through TFX 1.16's ``parse_raw_artifact_dict``, the code that
fails on the raw shapes (tensorflow/tfx#7768), so these tests fail if TFX cannot read it.
"""

from __future__ import annotations

import copy
import json

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as tfx_entry
from tfx.types import standard_artifacts

from backbone_regularizer.pipeline.kubeflow.entrypoint import (
    declared_input_types,
    repair_input_types,
)
from tests.kubeflow import pod

EXAMPLES_SCHEMA = "title: tfx.Examples\ntype: object\n"
MODEL_SCHEMA = "title: tfx.Model\ntype: object\n"
INPUTS_SPEC = json.dumps(
    {
        "artifacts": {
            "examples": {"artifactType": {"instanceSchema": EXAMPLES_SCHEMA}},
            "base_model": {"artifactType": {"instanceSchema": MODEL_SCHEMA}},
        },
        "parameters": {"run_fn": {"parameterType": "STRING"}},
    }
)


def executor_input(shape: str | None) -> dict:
    """A Trainer-like ExecutorInput whose input types are ``shape`` (None: no type at all)."""
    declared = declared_input_types(INPUTS_SPEC)
    inputs = {}
    for key in ("examples", "base_model"):
        entry = {"name": f"artifacts/{key}", "uri": f"/tmp/{key}", "metadata": {}}
        if shape is not None:
            entry["type"] = pod.INPUT_TYPE_SHAPES[shape](declared[key])
        inputs[key] = {"artifacts": [entry]}
    return {"inputs": {"artifacts": inputs, "parameterValues": {"run_fn": "m.run_fn"}}}


def tfx_parse(invocation: dict) -> dict:
    """What TFX's entrypoint makes of the input artifacts."""
    message = json_format.Parse(
        json.dumps(invocation), pipeline_spec_pb2.ExecutorInput(), ignore_unknown_fields=True
    )
    return tfx_entry.parse_raw_artifact_dict(message.inputs.artifacts, {})


@pytest.mark.parametrize("shape", ["kfp-backend", "kfp-local"])
def test_tfx_alone_cannot_read_what_kfp_sends(shape):
    with pytest.raises((AttributeError, ImportError)):
        tfx_parse(executor_input(shape))


@pytest.mark.parametrize("shape", ["kfp-backend", "kfp-local", None])
def test_missing_blank_or_generic_types_get_the_declared_type(shape):
    invocation = executor_input(shape)
    repaired = repair_input_types(invocation, declared_input_types(INPUTS_SPEC))
    assert len(repaired) == 2
    assert "using tfx.Examples" in repaired[0] or "using tfx.Examples" in repaired[1]
    parsed = tfx_parse(invocation)
    assert isinstance(parsed["examples"][0], standard_artifacts.Examples)
    assert isinstance(parsed["base_model"][0], standard_artifacts.Model)
    assert parsed["base_model"][0].uri == "/tmp/base_model"


def test_a_usable_runtime_type_is_kept_as_sent():
    invocation = executor_input("vertex")
    before = copy.deepcopy(invocation)
    assert repair_input_types(invocation, declared_input_types(INPUTS_SPEC)) == []
    assert invocation == before
    assert isinstance(tfx_parse(invocation)["examples"][0], standard_artifacts.Examples)


def test_an_unreadable_input_the_step_does_not_declare_is_an_error():
    invocation = executor_input("kfp-backend")
    with pytest.raises(ValueError, match=r"declare input 'base_model'.*Received: type=\{"):
        repair_input_types(invocation, {"examples": {"instanceSchema": EXAMPLES_SCHEMA}})

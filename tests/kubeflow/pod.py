"""What a KFP pod does for one compiled step, on this machine: ExecutorInput in, command run.

Open-source KFP's launcher substitutes ``{{$}}`` in the container args with the ExecutorInput
JSON: input artifacts (uri, type, metadata from the producer's executor output), the task's
constant parameters as ``parameterValues`` (numbers as JSON doubles; the deprecated
``parameters`` field is not filled), output artifacts and ``outputs.outputFile``. The only
change to the compiled command is ``python`` -> ``sys.executable`` (the venv's interpreter).

Input artifact types are what each orchestrator really sends (``INPUT_TYPE_SHAPES``), not the
spec's ``instanceSchema``: the open-source backend sends ``{"instanceSchema": ""}`` for every
upstream artifact (backend/src/v2/metadata/client.go ``GetOutputArtifactsByExecutionId`` sets
``Schema: ""``), kfp.local sends ``{"schemaTitle": "system.Artifact"}``, Vertex AI the spec's.
Output types are the spec's in all three. tests/kubeflow/test_kfp_local.py runs the whole
pipeline under kfp.local itself, where KFP builds every ExecutorInput.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PLACEHOLDER = "{{$}}"
INPUT_TYPE_SHAPES = {
    "kfp-backend": lambda declared: {"instanceSchema": ""},
    "kfp-local": lambda declared: {"schemaTitle": "system.Artifact"},
    "vertex": lambda declared: declared,
}


def component(job: dict, task: str) -> dict:
    spec = job["pipelineSpec"]
    return spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]


def container(job: dict, task: str) -> dict:
    label = component(job, task)["executorLabel"]
    return job["pipelineSpec"]["deploymentSpec"]["executors"][label]["container"]


def artifact(name: str, uri: str | Path, artifact_type: dict, metadata: dict | None = None):
    return {
        "name": f"artifacts/{name}",
        "uri": str(uri),
        "type": artifact_type,
        "metadata": metadata or {},
    }


def executor_input(
    job: dict,
    task: str,
    inputs: dict[str, tuple[str | Path, dict]],
    outputs: dict[str, str | Path],
    output_file: str | Path,
    input_types: str = "kfp-backend",
) -> dict:
    """``inputs``: key -> (uri, metadata); ``outputs``: key -> uri.

    Output types come from the spec; input types as ``input_types`` (a key of
    ``INPUT_TYPE_SHAPES``) sends them: by default the open-source KFP backend's.
    """
    input_type = INPUT_TYPE_SHAPES[input_types]
    definition = component(job, task)
    task_spec = job["pipelineSpec"]["root"]["dag"]["tasks"][task]
    in_types = definition.get("inputDefinitions", {}).get("artifacts", {})
    out_types = definition["outputDefinitions"]["artifacts"]
    assert set(inputs) == set(in_types), (sorted(inputs), sorted(in_types))
    assert set(outputs) == set(out_types), (sorted(outputs), sorted(out_types))
    parameters = {
        name: value["runtimeValue"]["constant"]
        for name, value in task_spec["inputs"].get("parameters", {}).items()
    }
    return {
        "inputs": {
            "artifacts": {
                key: {
                    "artifacts": [
                        artifact(
                            f"{task}-{key}-in",
                            uri,
                            input_type(in_types[key]["artifactType"]),
                            meta,
                        )
                    ]
                }
                for key, (uri, meta) in inputs.items()
            },
            "parameterValues": parameters,
        },
        "outputs": {
            "artifacts": {
                key: {"artifacts": [artifact(f"{task}-{key}", uri, out_types[key]["artifactType"])]}
                for key, uri in outputs.items()
            },
            "outputFile": str(output_file),
        },
    }


def command_line(job: dict, task: str, invocation: dict) -> list[str]:
    spec = container(job, task)
    assert spec["command"][0] == "python", spec["command"]
    assert spec["args"].count(PLACEHOLDER) == 1, spec["args"]
    args = [json.dumps(invocation) if arg == PLACEHOLDER else arg for arg in spec["args"]]
    return [sys.executable, *spec["command"][1:], *args]


def run(job: dict, task: str, invocation: dict, cwd: Path) -> dict:
    """Run the step's command in a subprocess; return its executor output file as a dict."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    cwd.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        command_line(job, task, invocation),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{task} failed:\n{result.stderr[-6000:]}"
    return json.loads(Path(invocation["outputs"]["outputFile"]).read_text())


def output_metadata(executor_output: dict, key: str) -> dict:
    (single,) = executor_output["artifacts"][key]["artifacts"]
    return single["metadata"]

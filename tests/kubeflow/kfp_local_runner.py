"""Run a compiled pipeline under KFP's own local orchestrator, ``kfp.local`` (kfp 2.17.3).

Runs in the ``kfp-local`` tool environment (tests/tool_env.py), not the project's: kfp 2.5,
which TFX 1.16 pins, has no ``kfp.local`` able to run a pipeline. KFP does everything a
cluster's driver and launcher do here: it walks the DAG, builds each task's ExecutorInput,
substitutes ``{{$}}``, passes artifacts from task to task and reads each executor output.

Only ``docker run IMAGE COMMAND`` is replaced: there is no Docker engine on these machines,
so ``docker.from_env()`` returns a client whose ``containers.run`` starts COMMAND as a local
process, with ``python`` the project's interpreter (the image's ``python`` is its venv).
The pipeline root is the same path inside and outside, as kfp.local's volume mount makes it.

``--input-types kfp-backend`` rewrites every input artifact's type in the ExecutorInput KFP
built to ``{"instanceSchema": ""}``, what the open-source KFP backend sends
(backend/src/v2/metadata/client.go ``GetOutputArtifactsByExecutionId``), before the process
starts. ``kfp-local`` leaves KFP's ExecutorInput as kfp.local built it.

Writes ``--result`` JSON: the pipeline status, KFP's error if it failed, and every task's
executor class and exit code in the order KFP ran them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import traceback
from types import SimpleNamespace

INVOCATION_FLAG = "--json_serialized_invocation_args"
EXECUTOR_FLAG = "--executor_class_path"


def backend_input_types(command: list[str]) -> list[str]:
    """The same command with every input artifact's type as the KFP backend sends it."""
    command = list(command)
    index = command.index(INVOCATION_FLAG) + 1
    invocation = json.loads(command[index])
    for channel in invocation.get("inputs", {}).get("artifacts", {}).values():
        for artifact in channel.get("artifacts", []):
            artifact["type"] = {"instanceSchema": ""}
    command[index] = json.dumps(invocation)
    return command


class _Process:
    """What ``containers.run(..., detach=True)`` returns: logs while running, then the code."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: str):
        self._process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def logs(self, stream: bool = True):
        yield from self._process.stdout

    def wait(self) -> dict:
        return {"StatusCode": self._process.wait()}


class LocalDocker:
    """The part of docker-py's client that kfp.local's DockerRunner calls."""

    def __init__(self, image: str, python: str, input_types: str, workdir: str, record: list):
        self._python = python
        self._input_types = input_types
        self._workdir = workdir
        self._record = record
        tagged = image if ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"
        self.images = SimpleNamespace(
            list=lambda: [SimpleNamespace(tags=[tagged], attrs={"RepoDigests": []})],
            pull=self._refuse_pull,
        )
        self.containers = SimpleNamespace(run=self._run)

    @staticmethod
    def _refuse_pull(image: str):
        raise RuntimeError(f"Expected the pipeline to use the project image. Received: {image}")

    def info(self) -> dict:
        return {"SecurityOptions": []}

    def close(self) -> None:
        pass

    def _run(self, image, command, volumes=None, environment=None, **_):
        if command[0] != "python":
            raise RuntimeError(f"Expected steps to start with `python`. Received: {command[:3]}")
        command = [self._python, *command[1:]]
        if self._input_types == "kfp-backend":
            command = backend_input_types(command)
        executor = command[command.index(EXECUTOR_FLAG) + 1]
        env = dict(os.environ, **(environment or {}))
        cwd = tempfile.mkdtemp(prefix="task-", dir=self._workdir)
        process = _Process(command, env, cwd)
        original_wait = process.wait

        def wait() -> dict:
            status = original_wait()
            self._record.append({"executor": executor, "exit_code": status["StatusCode"]})
            return status

        process.wait = wait
        return process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True, help="compiled PipelineSpec YAML")
    parser.add_argument("--pipeline-root", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--python", required=True, help="the project's interpreter")
    parser.add_argument("--input-types", choices=("kfp-local", "kfp-backend"), required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args()

    import docker
    from kfp import components, local

    record: list[dict] = []
    client = LocalDocker(args.image, args.python, args.input_types, args.workdir, record)
    docker.from_env = lambda *_, **__: client
    local.init(runner=local.DockerRunner(), pipeline_root=args.pipeline_root, raise_on_error=True)
    result = {"status": "SUCCESS", "error": None, "tasks": record}
    try:
        components.load_component_from_file(args.package)()
    except Exception:  # kfp.local raises RuntimeError naming the failed task
        result["status"] = "FAILURE"
        result["error"] = traceback.format_exc()
    with open(args.result, "w") as handle:
        json.dump(result, handle, indent=2)
    return 0 if result["status"] == "SUCCESS" else 1


if __name__ == "__main__":
    sys.exit(main())

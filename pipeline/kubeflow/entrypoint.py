"""The container entrypoint of every compiled step: ``python -m
backbone_regularizer.pipeline.kubeflow.entrypoint``.

It stands in front of TFX's own entrypoint (``kubeflow_v2_run_executor``) and fixes what TFX
1.16 cannot read in the ExecutorInput that Kubeflow Pipelines really sends:

* **Input artifact types.** TFX rebuilds each input artifact's Python class from the type
  in the ExecutorInput. Only Vertex AI sends the type the spec declares. Open-source KFP's
  backend sends ``{"instanceSchema": ""}`` for every upstream artifact (TFX parses ``""`` as
  YAML, gets ``None``: ``AttributeError``), and ``kfp.local`` sends ``{"schemaTitle":
  "system.Artifact"}`` (``ImportError``); tensorflow/tfx#7768. Every step's command line
  already carries the types its inputs must have (``--json_serialized_inputs_spec_args``), so
  an input whose runtime type is missing, blank or generic gets the declared one. A
  specific runtime type is kept as sent.
* **ExampleGen's span driver** (``--example_gen_driver``). TFX puts the driver of a
  FileBasedExampleGen in ``lifecycle.preCacheCheck``, a hook only Vertex AI runs. On
  open-source KFP the step runs the driver, then the executor, in one pod, and records the
  driver's span, version and fingerprint on the Examples artifact.
* **Object stores.** ``kubeflow_env.prepare_step`` registers ``s3://`` (tensorflow-io) and
  checks every bucket the ExecutorInput names before TFX runs, so a missing bucket, refused
  credentials or an unreachable endpoint fail the step at once with the URI and the cause.
* **The exit code.** The step leaves through ``process_exit.run_and_exit``: 0 when the
  executor succeeded, non-zero with the traceback when it failed, whatever the interpreter's
  teardown would do (tensorflow-io's S3 file system aborts it with 134).

Nothing else changes: TFX's entrypoint parses the rest and runs the executor.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from backbone_regularizer.pipeline.process_exit import run_and_exit

# The generic artifact type kfp.local sends for every input.
GENERIC_SCHEMA_TITLES = ("system.Artifact",)
EXAMPLE_GEN_DRIVER_FLAG = "--example_gen_driver"
# What TFX's driver resolves (its ExecutorOutput parameter values) and the executor entrypoint
# does not record on the Examples artifact; ``span`` and ``version`` are Examples properties.
_DRIVER_KEYS = ("span", "version", "input_fingerprint")
_EXAMPLES_KEY = "examples"


def _parser() -> argparse.ArgumentParser:
    from absl.flags import argparse_flags

    parser = argparse_flags.ArgumentParser(
        description="TFX's Kubeflow V2 executor entrypoint, with the input types KFP omits."
    )
    parser.add_argument("--executor_class_path", required=True)
    parser.add_argument("--json_serialized_invocation_args", required=True)
    parser.add_argument("--json_serialized_inputs_spec_args", required=False)
    parser.add_argument(EXAMPLE_GEN_DRIVER_FLAG, action="store_true")
    return parser


def _type_is_usable(artifact_type: dict | None) -> bool:
    """Whether TFX 1.16 can rebuild an artifact class from this runtime type (as JSON)."""
    if not artifact_type:
        return False
    title = artifact_type.get("schemaTitle")
    if title is not None:
        return bool(title.strip()) and title not in GENERIC_SCHEMA_TITLES
    schema = artifact_type.get("instanceSchema")
    if schema is None or not schema.strip():
        return False
    import yaml

    try:
        parsed = yaml.safe_load(schema)
    except yaml.YAMLError:
        return False
    return isinstance(parsed, dict) and bool(parsed.get("title"))


def declared_input_types(inputs_spec_json: str | None) -> dict[str, dict]:
    """Input key -> the declared artifact type, from ``--json_serialized_inputs_spec_args``."""
    if not inputs_spec_json:
        return {}
    spec = json.loads(inputs_spec_json)
    return {
        key: value["artifactType"]
        for key, value in spec.get("artifacts", {}).items()
        if "artifactType" in value
    }


def repair_input_types(executor_input: dict, declared: dict[str, dict]) -> list[str]:
    """Give each input artifact with an unusable runtime type its declared type, in place.

    Args:
        executor_input: the ExecutorInput as sent (parsed JSON).
        declared: ``declared_input_types(...)`` of the step.

    Returns:
        One line per repaired input: key, what was sent, what is used.

    Raises:
        ValueError: an input artifact has an unusable type and the step declares none for it.
    """
    repaired = []
    for key, channel in executor_input.get("inputs", {}).get("artifacts", {}).items():
        for artifact in channel.get("artifacts", []):
            sent = artifact.get("type")
            if _type_is_usable(sent):
                continue
            if key not in declared:
                raise ValueError(
                    f"Expected the step's --json_serialized_inputs_spec_args to declare input "
                    f"{key!r}, whose runtime type cannot be read. Received: type={sent!r}, "
                    f"declared inputs {sorted(declared)}"
                )
            artifact["type"] = declared[key]
            title = _schema_title(declared[key])
            repaired.append(f"input {key!r}: KFP sent type {json.dumps(sent)}; using {title}")
    return repaired


def _schema_title(artifact_type: dict) -> str:
    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    import yaml

    return yaml.safe_load(artifact_type.get("instanceSchema", "")).get("title", "?")


def _read_executor_output(path: str):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.dsl.io import fileio

    with fileio.open(path, "rb") as handle:
        return json_format.Parse(
            handle.read(), pipeline_spec_pb2.ExecutorOutput(), ignore_unknown_fields=True
        )


def _run_example_gen(args: argparse.Namespace, beam_args: list[str], output_file: str) -> None:
    """What Vertex AI does for a FileBasedExampleGen, inside one open-source KFP pod.

    1. TFX's driver resolves the span and fingerprint and writes them, with the
       span-resolved ``input_config``, to ``outputs.outputFile``.
    2. TFX's executor entrypoint reads that file (it merges the driver's parameters),
       runs the executor and overwrites the file with the output artifacts.
    3. The driver's span, version and fingerprint are added to the Examples artifact's
       metadata, so KFP records them in ML Metadata and downstream steps see ``span``.
    """
    from google.protobuf import json_format
    from tfx.dsl.io import fileio
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor
    from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver

    driver.main(args)
    resolved = _read_executor_output(output_file)
    kubeflow_v2_run_executor.main((args, beam_args))
    produced = _read_executor_output(output_file)
    if _EXAMPLES_KEY in produced.artifacts:
        metadata = produced.artifacts[_EXAMPLES_KEY].artifacts[0].metadata
        for name in _DRIVER_KEYS:
            if name in resolved.parameter_values:
                value = resolved.parameter_values[name]
                metadata[name] = getattr(value, value.WhichOneof("kind"))
    with fileio.open(output_file, "wb") as handle:
        handle.write(json_format.MessageToJson(produced))


def run_step(argv: Sequence[str]) -> None:
    """Repair the ExecutorInput's input types, then run TFX's entrypoint (and driver)."""
    from absl import logging

    from backbone_regularizer.pipeline.kubeflow import env as kubeflow_env

    logging.set_verbosity(logging.INFO)  # as TFX's entrypoint does
    args, beam_args = _parser().parse_known_args(list(argv))
    executor_input = json.loads(args.json_serialized_invocation_args)
    kubeflow_env.prepare_step(executor_input)
    declared = declared_input_types(args.json_serialized_inputs_spec_args)
    for line in repair_input_types(executor_input, declared):
        logging.info("kfp_entrypoint: %s", line)
    args.json_serialized_invocation_args = json.dumps(executor_input)
    example_gen_driver = getattr(args, EXAMPLE_GEN_DRIVER_FLAG.lstrip("-"))
    if example_gen_driver:
        _run_example_gen(args, beam_args, executor_input["outputs"]["outputFile"])
    else:
        from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

        kubeflow_v2_run_executor.main((args, beam_args))


def main(argv: Sequence[str] | None = None) -> None:
    run_and_exit(lambda: run_step(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()

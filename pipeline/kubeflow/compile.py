"""Compile ``create_pipeline`` for Kubeflow Pipelines v2 (scheduling: ``kubeflow.schedule``).

``compile_pipeline`` compiles the same pipeline the local runner runs with TFX's
``KubeflowV2DagRunner``, then adjusts what open-source KFP needs:

* Pipeline spec schema 2.1. Open-source KFP fills only ``parameterValues`` in the
  ExecutorInput. TFX's container entrypoint reads them only when it also gets
  ``--json_serialized_inputs_spec_args``, which TFX emits only for schema 2.1. With schema 2.0
  every execution property would reach the executors empty.
* Resources through ``with_platform_config``: the Trainer requests the GPU and CPU/memory
  limits, and the other heavy steps get CPU/memory limits. TFX drops ``with_platform_config``
  for Importer and FileBasedExampleGen nodes (tfx#6146), so ``ImageExampleGen`` and a
  ``backbone_importer`` run with the namespace's default resources.
* No Resolver node: the baseline comes from ``LatestPushedModel``. Open-source KFP cannot
  run Resolvers.
* A retry policy on every task (``retries.RetryPolicy``: by default 2 retries, 5 for the
  Trainer, 60 s backoff doubling): TFX writes none. Our steps start over cleanly on the
  output URI a failed attempt left, and the Trainer resumes from its last epoch
  (docs/retries.md).
* Every step runs ``python -m backbone_regularizer.pipeline.kubeflow.entrypoint``
(pipeline/kubeflow/entrypoint.py) in
  front of TFX's entrypoint: it gives each input artifact the type the step declares when
  KFP sends none usable (the open-source backend sends ``{"instanceSchema": ""}``,
  tensorflow/tfx#7768), and exits with the executor's result.
* ``ImageExampleGen`` (``platform="kubeflow"``): TFX puts the span driver of a
  FileBasedExampleGen in ``lifecycle.preCacheCheck``, a hook only Vertex AI runs. The
  open-source backend ignores it. Without the driver, ``{SPAN}`` is never resolved and the
  step's cache key never changes. So the compiled step adds ``--example_gen_driver`` to
  the entrypoint (TFX's driver, then TFX's executor entrypoint, in one pod), and KFP caching
  is off for this step only. New data is picked up on every run. Steps that do not depend on
  the data (BackboneLoader, BackboneRegularizer) stay cached.

ML Metadata is the platform's own on KFP, so the pipeline is built with no metadata
connection.

>>> job = compile_pipeline(
...     PipelineConfig.from_file("kfp.json"), "pipeline.json",
...     image="europe-docker.pkg.dev/p/r/backbone-regularizer:0.1.0",
...     pipeline_root="gs://bucket/backbone-regularizer/root",
... )
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from backbone_regularizer.pipeline.config import PipelineConfig
from backbone_regularizer.pipeline.kubeflow import ENTRYPOINT_MODULE
from backbone_regularizer.pipeline.kubeflow import env as kubeflow_env
from backbone_regularizer.pipeline.kubeflow.entrypoint import EXAMPLE_GEN_DRIVER_FLAG
from backbone_regularizer.pipeline.kubeflow.retries import (
    DEFAULT_POLICY,
    RetryPolicy,
    as_policy,
    describe_retries,
    set_retry_policy,
)

DEFAULT_GPU_TYPE = "nvidia.com/gpu"
PLATFORMS = ("kubeflow", "vertex")
JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")
# URI schemes every pod can reach: gs:// (TensorFlow), s3:// (AWS S3, MinIO and other
# S3-compatible stores, through tensorflow-io and Beam's boto3; see
# backbone_regularizer.pipeline.kubeflow.env).
POD_URI_SCHEMES = ("gs://", "s3://")

TRAINER_ID = "Trainer"
# Steps that get the CPU/memory limits (the Trainer has its own). The others are light,
# and TFX ignores platform configs on ImageExampleGen and backbone_importer.
HEAVY_NODE_IDS = ("StatisticsGen", "BackboneLoader", "BackboneRegularizer", "Evaluator")

# TFX's container entrypoint, and ours in front of it (pipeline/kubeflow/entrypoint.py).
TFX_ENTRYPOINT_COMMAND = (
    "python",
    "-m",
    "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
)
ENTRYPOINT_COMMAND = ("python", "-m", ENTRYPOINT_MODULE)

_K8S_RESOURCE = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VERTEX_ACCELERATOR = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _invalid(name: str, expected: str, value: Any) -> ValueError:
    return ValueError(
        f"Invalid value for argument `{name}`. Expected {expected}. Received: {name}={value!r}"
    )


def _check_platform(platform: str) -> None:
    if platform not in PLATFORMS:
        raise _invalid("platform", f"one of {list(PLATFORMS)}", platform)


def _check_gpu_type(gpu_type: str, platform: str) -> None:
    if platform == "kubeflow":
        if isinstance(gpu_type, str) and _VERTEX_ACCELERATOR.match(gpu_type):
            raise ValueError(
                "Invalid value for argument `gpu_type`. Expected a Kubernetes resource name "
                f"such as {DEFAULT_GPU_TYPE!r} on open-source KFP; Vertex AI accelerator names "
                "need platform='vertex'. "
                f"Received: gpu_type={gpu_type!r}"
            )
        if not isinstance(gpu_type, str) or not _K8S_RESOURCE.match(gpu_type):
            raise _invalid(
                "gpu_type",
                f"a Kubernetes resource name such as {DEFAULT_GPU_TYPE!r} or 'amd.com/gpu'",
                gpu_type,
            )
    elif not isinstance(gpu_type, str) or not _VERTEX_ACCELERATOR.match(gpu_type):
        raise _invalid(
            "gpu_type", "a Vertex AI accelerator name such as 'NVIDIA_TESLA_T4'", gpu_type
        )


def _check_positive(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise _invalid(name, "a finite number > 0", value)


def _check_pod_uri(name: str, value: str, allow_local_paths: bool) -> None:
    if value.startswith(POD_URI_SCHEMES):
        return
    if allow_local_paths and "://" not in value:
        return
    raise ValueError(
        f"Invalid value for `{name}` on Kubeflow. Expected a URI every pod can reach, starting "
        f"with one of {list(POD_URI_SCHEMES)} (MinIO is s3://; local paths only with "
        "allow_local_paths=True, for a volume mounted in every pod). "
        f"Received: {name}={value!r}"
    )


def _check_config_paths(config: PipelineConfig, allow_local_paths: bool) -> None:
    for name, value in config.locations().items():
        if name != "root":  # on Kubeflow, pipeline_root replaces the local run folder
            _check_pod_uri(f"config.{name}", value, allow_local_paths)


def resource_spec(cpu: float, memory_gb: float, gpu_type: str | None = None, gpus: int = 0):
    """A KFP ``ResourceSpec``: CPU/memory limits, plus ``gpus`` accelerators when > 0.

    Open-source KFP turns ``accelerator.type`` into a Kubernetes resource limit
    (``nvidia.com/gpu: 1``). Vertex AI reads it as an accelerator name (``NVIDIA_TESLA_T4``).
    ``memory_gb`` becomes ``<n>G``.
    """
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec_cls = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
    spec = spec_cls(cpu_limit=float(cpu), memory_limit=float(memory_gb))
    if gpus:
        spec.accelerator.CopyFrom(spec_cls.AcceleratorConfig(type=gpu_type, count=gpus))
    return spec


def _apply_resources(pipeline, trainer_spec, heavy_spec) -> None:
    from tfx.components import FileBasedExampleGen
    from tfx.dsl.components.base import base_component

    found = set()
    for node in pipeline.components:
        spec = trainer_spec if node.id == TRAINER_ID else None
        if node.id in HEAVY_NODE_IDS:
            spec = heavy_spec
        # Importer is not a BaseComponent; FileBasedExampleGen's platform config is dropped.
        if spec is None or not isinstance(node, base_component.BaseComponent):
            continue
        if isinstance(node, FileBasedExampleGen):
            continue
        node.with_platform_config(spec)
        found.add(node.id)
    if TRAINER_ID not in found:
        raise RuntimeError(
            f"Expected create_pipeline to build a node with id {TRAINER_ID!r}. "
            f"Received: {sorted(node.id for node in pipeline.components)}"
        )


def _use_project_entrypoint(job: dict, platform: str) -> None:
    """Every step runs ``python -m backbone_regularizer.pipeline.kubeflow.entrypoint`` in front of
    TFX's entrypoint.

    On open-source KFP, a step with a ``preCacheCheck`` driver (FileBasedExampleGen) also
    runs that driver in its pod, and KFP's cache is off for it: its cache key is the task's
    constant inputs, not the data, so a hit would never see a new span.
    """
    spec = job["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"]
    for task in spec["root"]["dag"]["tasks"].values():
        label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        container = executors[label].get("container")
        if container is None:  # an Importer: KFP runs it itself
            continue
        if container.get("command") != list(TFX_ENTRYPOINT_COMMAND):
            raise RuntimeError(
                f"Expected every TFX step to run {list(TFX_ENTRYPOINT_COMMAND)}. "
                f"Received: {label} runs {container.get('command')}"
            )
        container["command"] = list(ENTRYPOINT_COMMAND)
        if platform == "kubeflow" and "preCacheCheck" in container.get("lifecycle", {}):
            del container["lifecycle"]
            container["command"].append(EXAMPLE_GEN_DRIVER_FLAG)
            task["cachingOptions"] = {"enableCache": False}


def compile_pipeline(
    config: PipelineConfig,
    output_path: str | os.PathLike,
    image: str,
    pipeline_root: str | None,
    gpu_type: str = DEFAULT_GPU_TYPE,
    gpus: int = 1,
    *,
    trainer_cpu: float = 8.0,
    trainer_memory_gb: float = 32.0,
    cpu: float = 4.0,
    memory_gb: float = 16.0,
    platform: str = "kubeflow",
    allow_local_paths: bool = False,
    s3: dict | None = None,
    retries: RetryPolicy | int | None = DEFAULT_POLICY,
) -> dict:
    """Compile ``create_pipeline(config)`` into a KFP v2 pipeline file and return the PipelineJob.

    Every step runs ``image`` with ``python -m backbone_regularizer.pipeline.kubeflow.entrypoint``
    in front of TFX's
    container entrypoint (on open-source KFP, ImageExampleGen's adds the span driver). The
    Trainer gets
    ``gpus`` x ``gpu_type`` plus ``trainer_cpu``/``trainer_memory_gb`` limits.
    StatisticsGen, BackboneLoader, BackboneRegularizer and Evaluator get ``cpu``/``memory_gb``.
    ``config.beam_args`` (e.g. ``--runner=DataflowRunner --project=...``) reach every
    container as extra arguments. The Beam steps run them as pipeline options.

    Args:
        config: the validated configuration. Its data, weights and push destination must be
            gs:// URIs: each pod has its own filesystem.
        output_path: ``.json`` writes the PipelineJob (Vertex AI ``template_path``, and what
            ``schedule_recurring_run`` reads). ``.yaml``/``.yml`` writes the bare
            PipelineSpec that the open-source KFP UI and ``kfp.Client`` upload. Local or gs://.
        image: the container image built from this repository's Dockerfile.
        pipeline_root: gs:// URI for the artifacts. ``None`` uses ``config.pipeline_root``.
        gpu_type: open-source KFP: a Kubernetes resource name (``nvidia.com/gpu``). Vertex
            AI: an accelerator name (``NVIDIA_TESLA_T4``).
        gpus: GPUs for the Trainer. 0 compiles a CPU-only Trainer.
        trainer_cpu, trainer_memory_gb: the Trainer's CPU and memory (GB) limits.
        cpu, memory_gb: limits of the other heavy steps.
        platform: ``"kubeflow"`` (open-source KFP: ExampleGen's span driver runs in its pod)
            or ``"vertex"`` (Vertex AI runs TFX's preCacheCheck hook itself).
        allow_local_paths: accept local paths for the root and the config paths. Only for
            a volume mounted at the same path in every pod, or for running the compiled
            steps on one machine (tests).
        s3: with ``s3://`` URIs, keyword arguments of ``kubeflow.env.wire_s3``
            (``endpoint`` as the pods see it, ``secret_name``, ``secret_keys``). Every step
            gets the endpoint/region/TLS variables in its env and the key pair from that
            Kubernetes secret (default KFP's ``mlpipeline-minio-artifact``).
        retries: KFP's retry policy on every step (``retries.RetryPolicy``; an int ``n`` is
            ``RetryPolicy(retries=n)``; 0 or None: none). The default retries each step
            twice and the Trainer 5 times, after 60 s, 120 s, ...

    Returns:
        The PipelineJob as a dict (``pipelineSpec``, ``runtimeConfig``, ...), for every
        ``output_path`` format.

    Raises:
        TypeError: ``config`` is not a PipelineConfig, or ``retries`` is of another type.
        ValueError: an argument is out of range. The message names the argument and the
            value. Examples: a gpu_type that does not fit the platform, a negative ``gpus``,
            a local path without ``allow_local_paths``, an unknown output file suffix.
        RuntimeError: ``create_pipeline`` built no ``Trainer`` node, or built a Resolver.
    """
    if not isinstance(config, PipelineConfig):
        raise TypeError(
            f"Expected `config` to be a PipelineConfig. Received: {type(config).__name__}"
        )
    _check_platform(platform)
    if not isinstance(image, str) or not image or any(c.isspace() for c in image):
        raise _invalid("image", "a container image reference such as 'repo/name:tag'", image)
    if pipeline_root is None:
        pipeline_root = config.pipeline_root
    if not isinstance(pipeline_root, str) or not pipeline_root:
        raise _invalid("pipeline_root", "a gs:// URI", pipeline_root)
    _check_pod_uri("pipeline_root", pipeline_root, allow_local_paths)
    _check_config_paths(config, allow_local_paths)
    _check_gpu_type(gpu_type, platform)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise _invalid("gpus", "an int >= 0", gpus)
    for name, value in (
        ("trainer_cpu", trainer_cpu),
        ("trainer_memory_gb", trainer_memory_gb),
        ("cpu", cpu),
        ("memory_gb", memory_gb),
    ):
        _check_positive(name, value)
    retries = as_policy(retries)
    output_path = os.fspath(output_path)
    if not output_path.endswith(JSON_SUFFIXES + YAML_SUFFIXES):
        raise _invalid(
            "output_path",
            f"a file name ending in one of {list(JSON_SUFFIXES + YAML_SUFFIXES)}",
            output_path,
        )

    from tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner import (
        KubeflowV2DagRunner,
        KubeflowV2DagRunnerConfig,
    )

    from backbone_regularizer.pipeline.create_pipeline import create_pipeline

    pipeline = create_pipeline(config, pipeline_root, metadata_connection_config=None)
    _apply_resources(
        pipeline,
        trainer_spec=resource_spec(trainer_cpu, trainer_memory_gb, gpu_type, gpus),
        heavy_spec=resource_spec(cpu, memory_gb),
    )
    runner = KubeflowV2DagRunner(
        config=KubeflowV2DagRunnerConfig(default_image=image, use_pipeline_spec_2_1=True)
    )
    job = runner.run(pipeline, write_out=False)
    apply_kubeflow_fixes(
        job,
        pipeline_root=pipeline_root,
        platform=platform,
        store_uris=list(config.locations().values()),
        s3=s3,
        retries=retries,
    )
    write_pipeline_file(job, output_path)
    return job


def apply_kubeflow_fixes(
    job: dict,
    pipeline_root: str | None = None,
    platform: str = "kubeflow",
    store_uris: list[str] | tuple[str, ...] = (),
    s3: dict | None = None,
    retries: RetryPolicy | int | None = None,
) -> dict:
    """Make a TFX pipeline compiled by ``KubeflowV2DagRunner`` run on Kubeflow; in place.

    For any TFX 1.16 pipeline, not only ours (``compile_pipeline`` calls it too):

    * every step runs ``python -m backbone_regularizer.pipeline.kubeflow.entrypoint`` in front
      of TFX's entrypoint, which repairs the input types open-source KFP sends
      (tensorflow/tfx#7768), registers ``s3://`` and checks the buckets, and exits with the
      executor's result; on open-source KFP a FileBasedExampleGen's span driver runs in its
      pod (and KFP's cache is off for that step: its key does not see new data);
    * with any ``s3://`` URI (the root, ``store_uris``, or the job's own constant URIs), the
      endpoint/region variables go into every container and the key pair comes from a
      Kubernetes secret (``s3``: keyword arguments of ``kubeflow.env.wire_s3``);
    * ``pipeline_root`` is written as the spec's ``defaultPipelineRoot``;
    * with ``retries``, KFP's retry policy on every task (TFX writes none): only for steps
      that cope with the partial output of an attempt that was killed (ours do; see
      docs/retries.md for the TFX steps).

    The image must have this package installed (``pip install backbone-regularizer``).
    Resources and GPUs are set before compiling: ``component.with_platform_config(
    resource_spec(cpu, memory_gb, gpu_type, gpus))``.

    >>> runner = KubeflowV2DagRunner(KubeflowV2DagRunnerConfig(  # doctest: +SKIP
    ...     default_image=image, use_pipeline_spec_2_1=True))
    >>> job = runner.run(my_pipeline, write_out=False)  # doctest: +SKIP
    >>> apply_kubeflow_fixes(job, pipeline_root="s3://bucket/root",  # doctest: +SKIP
    ...                      s3={"endpoint": "http://minio-service.kubeflow:9000"})
    >>> write_pipeline_file(job, "pipeline.yaml")  # doctest: +SKIP

    Args:
        job: the PipelineJob dict ``KubeflowV2DagRunner.run(pipeline, write_out=False)``
            returns, compiled with ``use_pipeline_spec_2_1=True``.
        pipeline_root: the artifacts' root; None keeps the job's.
        platform: ``"kubeflow"`` (open-source KFP) or ``"vertex"``.
        store_uris: other URIs the steps read or write (data, weights, push destination),
            to decide whether ``s3://`` needs wiring.
        s3: keyword arguments of ``kubeflow.env.wire_s3`` (``endpoint``, ``secret_name``,
            ``secret_keys``).
        retries: a ``retries.RetryPolicy`` (or an int ``n``: ``RetryPolicy(retries=n)``,
            the Trainer ``max(n, 5)``) for every task; None leaves the tasks' policies as
            compiled.

    Returns:
        ``job``, changed.

    Raises:
        ValueError: ``platform`` is unknown, the job was compiled with pipeline spec schema
            2.0 (open-source KFP's parameters would reach the executors empty), or ``s3://``
            with ``platform="vertex"``.
        RuntimeError: a step does not run TFX's entrypoint, or the job holds a Resolver node
            (open-source KFP cannot run them).
        TypeError: ``retries`` is not a RetryPolicy, an int or None.
    """
    _check_platform(platform)
    retries = as_policy(retries)
    spec = job["pipelineSpec"]
    schema = spec.get("schemaVersion")
    if schema != "2.1.0":
        raise ValueError(
            "Expected a job compiled with pipeline spec schema 2.1.0 "
            "(KubeflowV2DagRunnerConfig(use_pipeline_spec_2_1=True)): with 2.0 open-source KFP "
            f"sends the executors no parameters. Received: schemaVersion={schema!r}"
        )
    _check_no_resolvers(job)
    _use_project_entrypoint(job, platform)
    root = pipeline_root or spec.get("defaultPipelineRoot") or ""
    uris = [root, *store_uris, *_constant_uris(job)]
    kubeflow_env.wire_s3(job, [u for u in uris if u], platform, **(s3 or {}))
    if pipeline_root:
        # Open-source KFP takes the root from the run (schedule_recurring_run passes it); keep
        # it in the spec too, so the YAML alone says where its artifacts belong.
        spec["defaultPipelineRoot"] = pipeline_root
    if retries is not None:
        set_retry_policy(job, retries)
    return job


def _constant_uris(job: dict) -> list[str]:
    """Every string constant of the job's tasks and importers that looks like a store URI."""
    spec = job["pipelineSpec"]
    constants = [
        value.get("runtimeValue", {}).get("constant")
        for task in spec["root"]["dag"]["tasks"].values()
        for value in task.get("inputs", {}).get("parameters", {}).values()
    ]
    constants += [
        executor["importer"].get("artifactUri", {}).get("constant")
        for executor in spec["deploymentSpec"]["executors"].values()
        if "importer" in executor
    ]
    return [c for c in constants if isinstance(c, str) and c.startswith(POD_URI_SCHEMES)]


def _check_no_resolvers(job: dict) -> None:
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    resolvers = sorted(label for label, spec in executors.items() if "resolver" in spec)
    if resolvers:
        raise RuntimeError(
            f"Expected no Resolver nodes (open-source KFP cannot run them). Received: {resolvers}"
        )


def write_pipeline_file(job: dict, path: str) -> None:
    """Write ``job`` as PipelineJob JSON (``.json``) or as bare PipelineSpec YAML (``.yaml``)."""
    import yaml
    from tfx.dsl.io import fileio

    parent = os.path.dirname(path)
    if parent:
        fileio.makedirs(parent)
    with fileio.open(path, "w") as handle:
        if path.endswith(YAML_SUFFIXES):
            handle.write(f"# PIPELINE DEFINITION\n# Name: {job['displayName']}\n")
            handle.write(yaml.safe_dump(job["pipelineSpec"], sort_keys=True))
            if kubeflow_env.PLATFORM_SPEC_KEY in job:  # kfp's layout: a second document
                handle.write("---\n")
                handle.write(yaml.safe_dump(job[kubeflow_env.PLATFORM_SPEC_KEY], sort_keys=True))
        else:
            handle.write(json.dumps(job, indent=2, sort_keys=True))


def describe(job: dict) -> str:
    """One line: name, step count, image, root, what the Trainer requests, the retries."""
    spec = job["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"]
    trainer = executors[spec["components"][TRAINER_ID]["executorLabel"]]["container"]
    resources = trainer.get("resources", {})
    accelerator = resources.get("accelerator")
    gpu = f"{accelerator['count']} x {accelerator['type']}" if accelerator else "no GPU"
    return (
        f"{spec['pipelineInfo']['name']}: {len(spec['root']['dag']['tasks'])} steps, "
        f"image {trainer['image']}, root {spec.get('defaultPipelineRoot')}; Trainer: {gpu}, "
        f"{resources.get('cpuLimit', '-')} CPU, {resources.get('memoryLimit', '-')} GB; "
        f"{describe_retries(job)}"
    )

"""S3/MinIO settings for every step of the compiled pipeline, and the in-pod store check.

What goes where, on open-source Kubeflow Pipelines:

* **Credentials** never enter the compiled file. Each step gets ``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY`` from a Kubernetes secret through the KFP platform spec
  (``platforms.kubernetes.deploymentSpec.executors.<label>.secretAsEnv``, the second YAML
  document, as kfp-kubernetes' ``use_secret_as_env`` writes it). The KFP backend's driver turns
  it into ``env[].valueFrom.secretKeyRef`` on the pod. The default secret is KFP's own MinIO
  secret, ``mlpipeline-minio-artifact`` (keys ``accesskey``/``secretkey``), in the run's
  namespace.
* **Endpoint, region, TLS switches** are not secret: they go into each executor's
  ``container.env`` (``PipelineContainerSpec.env`` in kfp-pipeline-spec 0.2.2), which the
  backend copies into the pod (Vertex AI too).
* Nothing goes into execution properties or Beam arguments: those land in ML Metadata.

In the pod, ``prepare_step`` (called by the step entrypoints before TFX's) registers ``s3://``
and checks every bucket of the ExecutorInput, so a missing bucket, a rejected key or an
unreachable endpoint fails the step at once with the URI and the cause, before anything is
written.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

from backbone_regularizer.pipeline import object_store

DEFAULT_SECRET = "mlpipeline-minio-artifact"
DEFAULT_SECRET_KEYS = ("accesskey", "secretkey")
# KFP's own MinIO, as seen from a pod in the kubeflow namespace.
KFP_MINIO_ENDPOINT = "http://minio-service.kubeflow:9000"
# Written into the spec: settings, never credentials.
SPEC_ENV_VARS = ("S3_ENDPOINT", "AWS_ENDPOINT_URL", "S3_USE_HTTPS", "S3_VERIFY_SSL") + (
    object_store.REGION_VARS
)
PLATFORM_SPEC_KEY = "platformSpec"


@dataclasses.dataclass(frozen=True)
class StepStoreSettings:
    """What every step needs to reach an S3-compatible store.

    Args:
        env: non-secret variables written into each container's ``env``.
        secret_name: Kubernetes secret holding the key pair (in the run's namespace).
        secret_keys: the secret's keys for the access key id and the secret access key.
    """

    env: dict[str, str]
    secret_name: str = DEFAULT_SECRET
    secret_keys: tuple[str, str] = DEFAULT_SECRET_KEYS

    def __post_init__(self):
        leaked = sorted(set(self.env) - set(SPEC_ENV_VARS))
        if leaked:
            raise ValueError(
                f"Expected only {list(SPEC_ENV_VARS)} in the compiled env (credentials come "
                f"from the secret). Received: {leaked}"
            )
        if not isinstance(self.secret_name, str) or not self.secret_name.strip():
            raise ValueError(
                "Invalid value for argument `s3_secret`. Expected a Kubernetes secret name. "
                f"Received: s3_secret={self.secret_name!r}"
            )
        keys = self.secret_keys
        if len(keys) != 2 or not all(isinstance(k, str) and k for k in keys):
            raise ValueError(
                "Invalid value for argument `s3_secret_keys`. Expected two key names "
                f"(access key id, secret access key). Received: s3_secret_keys={keys!r}"
            )


def settings_from(
    environ: Mapping[str, str],
    endpoint: str | None = None,
    secret_name: str = DEFAULT_SECRET,
    secret_keys: tuple[str, str] = DEFAULT_SECRET_KEYS,
) -> StepStoreSettings:
    """The step settings: ``endpoint`` (else the compiling shell's), region and TLS switches.

    ``endpoint`` is the store as the pods see it (``http://minio-service.kubeflow:9000`` for
    KFP's MinIO), which can differ from the one the compiling machine uses.
    """
    chosen = {
        name: environ[name]
        for name in ("S3_USE_HTTPS", "S3_VERIFY_SSL", *object_store.REGION_VARS)
        if environ.get(name)
    }
    if endpoint:
        chosen["S3_ENDPOINT"] = endpoint
    else:
        chosen.update({n: environ[n] for n in object_store.ENDPOINT_VARS if environ.get(n)})
    derived = object_store.s3_environment(chosen)
    env = {name: value for name, value in {**chosen, **derived}.items() if name in SPEC_ENV_VARS}
    return StepStoreSettings(env=env, secret_name=secret_name, secret_keys=tuple(secret_keys))


def apply(job: dict, settings: StepStoreSettings) -> None:
    """Add ``settings`` to every executor of the compiled ``job`` (in place).

    Sets each container's ``env`` and ``job["platformSpec"]``: the KFP platform spec that
    ``backbone_regularizer.pipeline.kubeflow.write_pipeline_file`` writes as the YAML file's second
    document.
    """
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    env = [{"name": name, "value": value} for name, value in sorted(settings.env.items())]
    key_id, secret_key = settings.secret_keys
    secret_as_env = [
        {
            "secretName": settings.secret_name,
            "keyToEnv": [
                {"secretKey": key_id, "envVar": "AWS_ACCESS_KEY_ID"},
                {"secretKey": secret_key, "envVar": "AWS_SECRET_ACCESS_KEY"},
            ],
        }
    ]
    platform_executors = {}
    for label, executor in sorted(executors.items()):
        container = executor.get("container")
        if container is None:  # an importer: KFP's own driver reads only the URI
            continue
        kept = [e for e in container.get("env", []) if e["name"] not in settings.env]
        container["env"] = kept + env
        platform_executors[label] = {"secretAsEnv": secret_as_env}
    job[PLATFORM_SPEC_KEY] = {
        "platforms": {"kubernetes": {"deploymentSpec": {"executors": platform_executors}}}
    }


def wire_s3(
    job: dict,
    uris: list[str],
    platform: str,
    endpoint: str | None = None,
    secret_name: str = DEFAULT_SECRET,
    secret_keys: tuple[str, str] = DEFAULT_SECRET_KEYS,
    environ: Mapping[str, str] | None = None,
) -> StepStoreSettings | None:
    """``apply`` the settings when any of ``uris`` is ``s3://``; return them (else None).

    Raises:
        ValueError: ``s3://`` with ``platform="vertex"`` (Vertex AI pods cannot read a
            Kubernetes secret), or bad secret settings.
    """
    if not any(object_store.is_s3(uri) for uri in uris):
        return None
    if platform != "kubeflow":
        raise ValueError(
            "Expected gs:// URIs on Vertex AI (its pods cannot read Kubernetes secrets). "
            f"Received: s3:// URIs with platform={platform!r}: "
            f"{sorted(u for u in uris if object_store.is_s3(u))}"
        )
    settings = settings_from(
        os.environ if environ is None else environ, endpoint, secret_name, secret_keys
    )
    apply(job, settings)
    return settings


def read_text(path: str) -> str:
    """A local file with ``open`` (no TensorFlow import: `schedule`), a URI with ``fileio``.

    Raises:
        FileNotFoundError: no such file.
    """
    if "://" not in path:
        with open(path) as handle:
            return handle.read()
    from tfx.dsl.io import fileio

    if not fileio.exists(path):
        raise FileNotFoundError(path)
    with fileio.open(path) as handle:
        return handle.read()


def platform_documents(path: str | os.PathLike) -> list[dict]:
    """The KFP platform spec(s) of a file written by ``compile_pipeline`` (YAML or JSON)."""
    import yaml

    path = os.fspath(path)
    text = read_text(path)
    if path.endswith(".json"):
        spec = json.loads(text).get(PLATFORM_SPEC_KEY)
        return [spec] if spec else []
    return [doc for doc in list(yaml.safe_load_all(text))[1:] if doc]


# --- In the pod -------------------------------------------------------------------------------


def executor_input_uris(executor_input: Mapping) -> dict[str, str]:
    """Every artifact URI of a KFP ExecutorInput (dict form), named ``inputs.<key>[i]``."""
    found: dict[str, str] = {}
    for side in ("inputs", "outputs"):
        for key, entry in executor_input.get(side, {}).get("artifacts", {}).items():
            for i, artifact in enumerate(entry.get("artifacts", [])):
                if artifact.get("uri"):
                    found[f"{side}.{key}[{i}]"] = artifact["uri"]
    output_file = executor_input.get("outputs", {}).get("outputFile")
    if output_file:
        found["outputs.outputFile"] = output_file
    return found


def prepare_step(executor_input: dict, environ: Mapping[str, str] | None = None) -> None:
    """Before TFX's step entrypoint: register ``s3://`` and check the step's buckets.

    ``executor_input`` is the step's parsed ``--json_serialized_invocation_args``. When it
    names ``s3://`` anywhere (an artifact URI or a parameter such as a preset), ``s3://`` is
    registered and ``object_store.check_uris`` checks the artifact URIs; a step without
    ``s3://`` needs nothing of the ``s3`` extra. The process must end through
    ``backbone_regularizer.pipeline.process_exit`` (tensorflow/io#2039).

    Raises:
        ObjectStoreError: a bucket is missing, the credentials are refused or the endpoint
            is unreachable (the message names the artifact, its URI and the cause).
        MissingExtraError: the step names ``s3://`` and the ``s3`` extra is not installed.
    """
    if object_store.S3_SCHEME not in json.dumps(executor_input):
        return
    object_store.configure_process()
    uris = executor_input_uris(executor_input)
    object_store.check_uris(uris, os.environ if environ is None else environ)

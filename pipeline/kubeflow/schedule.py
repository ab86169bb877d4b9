"""Schedule a compiled pipeline file as a KFP recurring run (kfp 2.5's ``kfp.Client``).

>>> schedule_recurring_run(kfp.Client(host=...), "pipeline.json", experiment="retrain",
...                        job_name="nightly", cron="0 0 3 * * *")
"""

from __future__ import annotations

import json
import os
import tempfile

from backbone_regularizer.pipeline.kubeflow import env as kubeflow_env
from backbone_regularizer.pipeline.kubeflow.compile import JSON_SUFFIXES, YAML_SUFFIXES, _invalid


def load_pipeline_file(path: str | os.PathLike) -> tuple[dict, str | None]:
    """Read a compiled file back: ``(pipeline_spec, pipeline_root)``, from JSON or YAML.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a file compiled by ``compile_pipeline`` (or by KFP for YAML).
    """
    import yaml

    path = os.fspath(path)
    try:
        text = kubeflow_env.read_text(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"Expected a compiled pipeline file. Received: {path!r} (missing)"
        ) from err
    if path.endswith(YAML_SUFFIXES):
        spec = next(iter(yaml.safe_load_all(text)), None)  # then kfp's platform spec, if any
        root = spec.get("defaultPipelineRoot") if isinstance(spec, dict) else None
    elif path.endswith(JSON_SUFFIXES):
        job = json.loads(text)
        spec = job.get("pipelineSpec") if isinstance(job, dict) else None
        root = job.get("runtimeConfig", {}).get("gcsOutputDirectory") if spec else None
    else:
        raise _invalid("package", f"a {list(JSON_SUFFIXES + YAML_SUFFIXES)} file", path)
    if not isinstance(spec, dict) or "root" not in spec or "deploymentSpec" not in spec:
        raise ValueError(
            f"Expected a compiled pipeline (PipelineJob JSON or PipelineSpec YAML). "
            f"Received: {path!r} without pipelineSpec.root/deploymentSpec"
        )
    return spec, root


def check_cron(cron: str) -> None:
    """KFP's scheduler cron (robfig/cron v1): six fields, seconds first, or an @descriptor.

    A five-field Unix cron is refused. KFP would read ``0 3 * * *`` as second 0, minute 3,
    every hour.
    """
    if isinstance(cron, str) and cron.strip().startswith("@"):
        return
    if not isinstance(cron, str) or len(cron.split()) != 6:
        raise _invalid(
            "cron",
            "six fields with seconds first, e.g. '0 0 3 * * *' for 03:00 daily, or an "
            "@descriptor such as '@daily'",
            cron,
        )


def schedule_recurring_run(
    client,
    package_path: str | os.PathLike,
    *,
    experiment: str,
    job_name: str,
    cron: str,
    namespace: str | None = None,
):
    """Create a KFP recurring run of a compiled pipeline file; return what KFP returns.

    kfp 2.5's ``create_recurring_run`` reads only ``.yaml``/``.zip``/``.tar.gz`` packages and
    takes the pipeline root from the run, so a PipelineJob JSON is converted to a temporary
    PipelineSpec YAML, and its ``runtimeConfig.gcsOutputDirectory`` becomes the run's root.
    At most one run at a time and no catch-up: each run ingests the latest span anyway.

    Args:
        client: a ``kfp.Client``.
        package_path: a file written by ``compile_pipeline`` (JSON or YAML).
        experiment: KFP experiment name (created if missing).
        job_name: the recurring run's display name.
        cron: see ``check_cron``.
        namespace: the Kubeflow profile namespace (multi-user deployments).

    Raises:
        ValueError: bad cron, empty names, or a package without a pipeline root.
        FileNotFoundError: no package file.
    """
    check_cron(cron)
    for name, value in (("experiment", experiment), ("job_name", job_name)):
        if not isinstance(value, str) or not value.strip():
            raise _invalid(name, "a non-empty name", value)
    spec, root = load_pipeline_file(package_path)
    if not root:
        raise ValueError(
            "Expected the package to name its pipeline root (runtimeConfig.gcsOutputDirectory "
            f"or defaultPipelineRoot). Received: none in {os.fspath(package_path)!r}"
        )
    import yaml

    with tempfile.TemporaryDirectory(prefix="backbone-regularizer-kfp-") as tmp:
        spec_path = os.path.join(tmp, "pipeline.yaml")
        with open(spec_path, "w") as handle:
            # The platform spec (S3 credentials from a secret) follows as a second document.
            yaml.safe_dump_all([spec, *kubeflow_env.platform_documents(package_path)], handle)
        created = client.create_experiment(name=experiment, namespace=namespace)
        return client.create_recurring_run(
            experiment_id=created.experiment_id,
            job_name=job_name,
            cron_expression=cron,
            pipeline_package_path=spec_path,
            pipeline_root=root,
            max_concurrency=1,
            no_catchup=True,
            enabled=True,
        )

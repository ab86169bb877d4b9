"""`backbone-reg compile` and `backbone-reg schedule`: thin commands over
backbone_regularizer.pipeline.kubeflow.

Registered on the main group with ``main.add_command(compile_command)`` and
``main.add_command(schedule_command)``. TensorFlow, TFX and kfp are imported only when a
command runs.
"""

from __future__ import annotations

import click

from backbone_regularizer.pipeline.cli.errors import fail as _fail
from backbone_regularizer.pipeline.kubeflow.retries import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_MAX_DURATION_SECONDS,
    DEFAULT_RETRIES,
    TRAINER_MIN_RETRIES,
)


@click.command("compile")
@click.option(
    "--output",
    "output",
    default="pipeline.json",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="PipelineJob .json (Vertex AI, `schedule`), or PipelineSpec .yaml (KFP UI upload).",
)
@click.option("--image", required=True, help="Container image built from the Dockerfile.")
@click.option(
    "--pipeline-root",
    default=None,
    help="gs:// URI for the artifacts [default: <config root>/pipeline].",
)
@click.option(
    "--gpu-type",
    default="nvidia.com/gpu",
    show_default=True,
    help="Trainer GPU: Kubernetes resource name (KFP) or accelerator name (Vertex AI).",
)
@click.option("--gpus", type=int, default=1, show_default=True, help="Trainer GPUs; 0 for CPU.")
@click.option(
    "--platform",
    type=click.Choice(["kubeflow", "vertex"]),
    default="kubeflow",
    show_default=True,
    help="Open-source Kubeflow Pipelines, or Vertex AI Pipelines.",
)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="JSON config.")
@click.option(
    "--s3-endpoint",
    default=None,
    help="s3:// only: the S3/MinIO endpoint as the pods see it, e.g. "
    "http://minio-service.kubeflow:9000 [default: $S3_ENDPOINT or $AWS_ENDPOINT_URL; "
    "neither: AWS S3].",
)
@click.option(
    "--s3-secret",
    default="mlpipeline-minio-artifact",
    show_default=True,
    help="s3:// only: Kubernetes secret with the key pair, in the run's namespace.",
)
@click.option(
    "--s3-secret-keys",
    default="accesskey,secretkey",
    show_default=True,
    help="s3:// only: the secret's keys for the access key id and the secret access key.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=DEFAULT_RETRIES,
    show_default=True,
    help="KFP retries of a failed step (0: none). Steps start over cleanly; the Trainer "
    "resumes from its last epoch.",
)
@click.option(
    "--trainer-retries",
    type=click.IntRange(min=0),
    default=None,
    help=f"Retries of the Trainer [default: max(--retries, {TRAINER_MIN_RETRIES}); "
    "0 when --retries is 0].",
)
@click.option(
    "--retry-backoff",
    type=click.IntRange(min=0),
    default=DEFAULT_BACKOFF_SECONDS,
    show_default=True,
    help="Seconds before the first retry; doubled after each.",
)
@click.option(
    "--retry-max-duration",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_DURATION_SECONDS,
    show_default=True,
    help="Seconds. Open-source KFP: no retry starts later than this after a step's first "
    "attempt started (keep it above the longest training). Vertex AI: the longest wait.",
)
@click.option("-v", "--verbose", is_flag=True, help="Also stream the log file to stderr.")
@click.pass_context
def compile_command(
    ctx,
    output,
    image,
    pipeline_root,
    gpu_type,
    gpus,
    platform,
    config_path,
    s3_endpoint,
    s3_secret,
    s3_secret_keys,
    retries,
    trainer_retries,
    retry_backoff,
    retry_max_duration,
    verbose,
):
    """Compile the pipeline for Kubeflow Pipelines v2 (GPU Trainer) into OUTPUT.

    The config's data, backbone weights and push destination must be gs:// or s3:// URIs
    (MinIO is s3://): every step runs in its own pod. With s3://, each step gets the
    endpoint, region and S3_USE_HTTPS/S3_VERIFY_SSL in its env and the key pair from
    --s3-secret; no key is written into OUTPUT. Every step gets KFP's retry policy
    (--retries; docs/retries.md).
    """
    import os

    from backbone_regularizer.pipeline.cli.console import Console, is_verbose, log_path

    folder = os.path.dirname(os.path.abspath(output)) if "://" not in output else "."
    with Console(log_path(folder, "compile"), is_verbose(ctx, verbose)) as console:
        from backbone_regularizer.pipeline.config import PipelineConfig
        from backbone_regularizer.pipeline.kubeflow.compile import compile_pipeline, describe
        from backbone_regularizer.pipeline.kubeflow.retries import RetryPolicy

        try:
            config = PipelineConfig.from_file(config_path) if config_path else PipelineConfig()
            policy = RetryPolicy(
                retries=retries,
                trainer_retries=trainer_retries,
                backoff_seconds=retry_backoff,
                max_duration_seconds=retry_max_duration,
            )
            job = compile_pipeline(
                config,
                output,
                image=image,
                pipeline_root=pipeline_root,
                gpu_type=gpu_type,
                gpus=gpus,
                platform=platform,
                s3={
                    "endpoint": s3_endpoint,
                    "secret_name": s3_secret,
                    "secret_keys": tuple(k.strip() for k in s3_secret_keys.split(",")),
                },
                retries=policy,
            )
        except (ValueError, TypeError, FileNotFoundError) as err:
            console.fail(err)
        console.echo(f"wrote {output}")
        console.echo(describe(job))
        if "platformSpec" in job:
            console.echo(_describe_s3(job))
        console.echo(f"log: {console.path}", err=True)


def _describe_s3(job: dict) -> str:
    """Which endpoint and secret the steps use (names, never values of credentials)."""
    executors = job["platformSpec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    first = next(iter(executors.values()))["secretAsEnv"][0]
    env = {}
    for executor in job["pipelineSpec"]["deploymentSpec"]["executors"].values():
        for entry in executor.get("container", {}).get("env", []):
            env[entry["name"]] = entry["value"]
    keys = ", ".join(f"{k['envVar']} <- {k['secretKey']}" for k in first["keyToEnv"])
    return (
        f"s3: {len(executors)} steps get endpoint {env.get('AWS_ENDPOINT_URL', 'AWS default')} "
        f"and secret {first['secretName']!r} ({keys})"
    )


@click.command("schedule")
@click.option(
    "--host",
    default=None,
    help="KFP API endpoint, e.g. http://localhost:8080 [default: kfp.Client's discovery].",
)
@click.option(
    "--package",
    "package",
    default="pipeline.json",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="File written by `compile` (.json or .yaml).",
)
@click.option(
    "--cron",
    required=True,
    help="KFP cron: 6 fields, seconds first, e.g. '0 0 3 * * *' (03:00 daily), or '@daily'.",
)
@click.option("--experiment", default="backbone-regularizer", show_default=True)
@click.option("--job-name", required=True, help="Display name of the recurring run.")
@click.option("--namespace", default=None, help="Kubeflow profile namespace (multi-user).")
def schedule_command(host, package, cron, experiment, job_name, namespace):
    """Create a recurring run of a compiled pipeline (one run at a time, no catch-up)."""
    from backbone_regularizer.pipeline.kubeflow.schedule import (
        check_cron,
        load_pipeline_file,
        schedule_recurring_run,
    )

    try:
        check_cron(cron)  # before connecting: a wrong schedule should not need a cluster
        load_pipeline_file(package)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)

    import kfp

    client = kfp.Client(host=host)
    try:
        recurring = schedule_recurring_run(
            client,
            package,
            experiment=experiment,
            job_name=job_name,
            cron=cron,
            namespace=namespace,
        )
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    recurring_id = getattr(recurring, "recurring_run_id", None)
    click.echo(f"scheduled {job_name!r} ({cron}) in experiment {experiment!r}: {recurring_id}")

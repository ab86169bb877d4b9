"""`backbone-reg lineage`: where a pushed model came from, read from ML Metadata.

A thin click command over ``backbone_regularizer.pipeline.lineage``;
``backbone_regularizer.pipeline.cli.main`` adds it to the
group with ``main.add_command(lineage_command)``.
"""

from __future__ import annotations

import json
import os
import tempfile

import click


def open_store(
    metadata_path: str | None = None,
    grpc_host: str | None = None,
    grpc_port: int = 8080,
):
    """The ML Metadata store: a gRPC service when ``grpc_host`` is set, else a sqlite file.

    ``metadata_path`` defaults to the demo config's, the store `make run` writes
    (``runs/demo/metadata.sqlite``).

    Raises:
        FileNotFoundError: the sqlite file does not exist (opening it read-only would not
            create it, and an empty store would only say "no pushed model").
    """
    from backbone_regularizer.pipeline.lineage.queries import connect, connect_grpc

    if grpc_host:
        return connect_grpc(grpc_host, grpc_port)
    if metadata_path is None:
        from backbone_regularizer.pipeline.config import metadata_path_of

        metadata_path = metadata_path_of()
    if not os.path.isfile(metadata_path):
        raise FileNotFoundError(
            "Expected an ML Metadata sqlite file (run `backbone-reg run` first, or pass "
            f"--metadata or --grpc-host). Received: --metadata={metadata_path!r} (missing)"
        )
    return connect(metadata_path)


@click.command("lineage")
@click.option(
    "--metadata",
    "metadata_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="ML Metadata sqlite file [default: the one `backbone-reg run` writes, "
    "runs/demo/metadata.sqlite].",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Use the metadata store of this pipeline JSON config (instead of --metadata).",
)
@click.option(
    "--grpc-host",
    default=None,
    help="ML Metadata gRPC service host (KFP: metadata-grpc-service.kubeflow, or localhost "
    "after kubectl port-forward). Replaces --metadata.",
)
@click.option("--grpc-port", type=int, default=8080, show_default=True, help="gRPC port.")
@click.option(
    "--pushed-model",
    "pushed_model",
    metavar="URI",
    default=None,
    help="The pushed model's serving folder (pushed_destination) or PushedModel artifact URI.",
)
@click.option("--latest", is_flag=True, help="The newest PushedModel with pushed=1 (the default).")
@click.option("--pipeline", "pipeline_name", default=None, help="Only this pipeline's models.")
@click.option("--no-metrics", is_flag=True, help="Do not read evaluation metrics (no TFMA).")
@click.option("--json", "as_json", is_flag=True, help="Print summary and tree as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Also stream the log file to stderr.")
@click.pass_context
def lineage_command(
    ctx,
    metadata_path,
    config_path,
    grpc_host,
    grpc_port,
    pushed_model,
    latest,
    pipeline_name,
    no_metrics,
    as_json,
    verbose,
):
    """Trace a pushed model back to its blessing, Trainer run, regularized backbone and data.

    Follows ML Metadata events: PushedModel <- Pusher <- Evaluator blessing and metrics <-
    Trainer (model, model_run) <- BackboneRegularizer (validation properties) <- backbone
    (BackboneLoader provenance or Importer URI), and the examples (span, split counts,
    label map).
    """
    from ml_metadata import errors

    from backbone_regularizer.pipeline.cli.console import Console, is_verbose, log_path

    if pushed_model and latest:
        raise click.UsageError("Give either --pushed-model URI or --latest, not both.")
    if sum(bool(x) for x in (config_path, metadata_path, grpc_host)) > 1:
        raise click.UsageError("Give one of --config, --metadata or --grpc-host.")
    where = f"{grpc_host}:{grpc_port}" if grpc_host else metadata_path
    try:
        if config_path:
            from backbone_regularizer.pipeline.config import metadata_path_of

            metadata_path = where = metadata_path_of(config_path)
        store = open_store(metadata_path, grpc_host, grpc_port)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    # The log goes beside the sqlite store; a gRPC store has no local folder.
    folder = (
        tempfile.mkdtemp(prefix="backbone-reg-lineage-")
        if grpc_host
        else os.path.dirname(os.path.abspath(store_path(metadata_path)))
    )
    with Console(log_path(folder, "lineage"), is_verbose(ctx, verbose)) as console:
        try:
            result = _lineage(store, pushed_model, pipeline_name, with_metrics=not no_metrics)
        except (LookupError, ValueError, FileNotFoundError) as err:
            console.fail(err)
        except errors.StatusError as err:  # gRPC: unreachable service, timeout, refused
            console.fail(
                f"Expected a reachable ML Metadata store at {where} (for KFP: `kubectl -n "
                "kubeflow port-forward svc/metadata-grpc-service 8080:8080`, then --grpc-host "
                f"localhost). Received: {type(err).__name__}: {err}"
            )
        if as_json:
            console.echo(json.dumps(result, indent=2, sort_keys=True))
        else:
            from backbone_regularizer.pipeline.lineage.format import format_lineage

            console.echo(format_lineage(result["tree"]))
            console.echo("")
            console.echo(format_summary_lines(result["summary"]))
        console.echo(f"log: {console.path}", err=True)


def store_path(metadata_path: str | None) -> str:
    """The sqlite file ``open_store`` opens for ``metadata_path`` (the demo's by default)."""
    from backbone_regularizer.pipeline.config import metadata_path_of

    return metadata_path or metadata_path_of()


def _lineage(store, pushed_model, pipeline_name, with_metrics: bool) -> dict:
    from backbone_regularizer.pipeline.lineage.facts import pushed_model_lineage

    # Evaluation metrics on s3:// register s3:// when read (lineage.graph.evaluation_metrics).
    return pushed_model_lineage(
        store, pushed_model, pipeline_name=pipeline_name, with_metrics=with_metrics
    )


def format_summary_lines(summary: dict) -> str:
    """A few lines answering "what is this model made of" from ``lineage_summary``."""
    lines = []
    pushed = summary.get("pushed_model", {})
    lines.append(f"pushed model: {pushed.get('pushed_destination') or pushed.get('uri')}")
    if "blessing" in summary:
        lines.append(f"  blessed: {summary['blessing']['blessed']}")
    trainer = summary.get("trainer")
    if trainer:
        lines.append(
            f"  trained by {trainer['node']} execution {trainer['execution_id']} "
            f"(run {trainer['run']}); logs {trainer['model_run']}"
        )
    examples = summary.get("examples")
    if examples:
        spans = examples.get("spans") or [examples["span"]]
        lines.append(f"  examples: spans {spans}, splits {examples['split_counts']}")
        if examples.get("label_map"):
            lines.append(f"  labels: {examples['label_map']} ({examples.get('label_source')})")
    regularizer = summary.get("regularizer")
    if regularizer:
        props = regularizer["properties"]
        lines.append(
            f"  regularized backbone: {props.get('regularizer')} on "
            f"{props.get('num_regularized')} weights, validation passed "
            f"{bool(props.get('validation_passed'))}"
        )
    backbone = summary.get("backbone")
    if backbone:
        origin = (
            f"imported from {backbone['uri']}"
            if backbone["imported"]
            else f"{backbone.get('source')} ({backbone.get('parameter_count')} parameters)"
        )
        if backbone.get("weights_sha256"):
            origin += f", weights sha256 {backbone['weights_sha256']}"
        lines.append(f"  backbone: {origin}")
    return "\n".join(lines)

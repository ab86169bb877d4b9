"""`backbone-reg lineage`: where a pushed model came from, read from the artifact store's
provenance records (``--root``) or from ML Metadata, and checked file by file (``--verify``).

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
@click.option(
    "--root",
    metavar="URI",
    default=None,
    help="Read the lineage from the provenance records under this pipeline root (a local "
    "path, s3:// or gs://), without ML Metadata. Replaces --metadata/--config/--grpc-host.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Re-hash every artifact on the pushed model's chain against its provenance record; "
    "exit 1 naming each file that differs.",
)
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
    root,
    verify,
    no_metrics,
    as_json,
    verbose,
):
    """Trace a pushed model back to its blessing, Trainer run, regularized backbone and data.

    PushedModel <- Pusher <- Evaluator blessing and metrics <- Trainer (model, model_run) <-
    BackboneRegularizer (validation properties) <- backbone (BackboneLoader provenance or
    Importer URI), and the examples (span, split counts, label map). With --root, from the
    provenance records in the store; else from ML Metadata events.
    """
    from backbone_regularizer.pipeline.cli.console import Console, is_verbose, log_path

    if pushed_model and latest:
        raise click.UsageError("Give either --pushed-model URI or --latest, not both.")
    if root:
        if config_path or metadata_path or grpc_host or pipeline_name:
            raise click.UsageError(
                "--root reads the store alone: give it without --metadata, --config, "
                "--grpc-host and --pipeline."
            )
        folder = root if "://" not in root else tempfile.mkdtemp(prefix="backbone-reg-lineage-")
        with Console(log_path(folder, "lineage"), is_verbose(ctx, verbose)) as console:
            _from_store(console, root, pushed_model, verify, not no_metrics, as_json)
        return
    from ml_metadata import errors

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
        verification = None
        if verify:
            from backbone_regularizer.pipeline.lineage.store import store_of_pushed, verify_chain

            destination = result["summary"]["pushed_model"].get("pushed_destination")
            try:
                _register_s3(destination or "")
                verification = verify_chain(store_of_pushed(destination or ""))
            except (LookupError, ValueError, FileNotFoundError) as err:
                console.fail(err)
        _print(console, result, verification, as_json)


def _from_store(console, root, pushed_model, verify, with_metrics, as_json) -> None:
    from backbone_regularizer.components.provenance import RecordError
    from backbone_regularizer.pipeline.lineage import store as records

    try:
        store = records.scan(root, prepare=_register_s3)
        result = records.store_lineage(store, pushed_model, with_metrics=with_metrics)
        verification = records.verify_chain(store, pushed_model) if verify else None
    except (LookupError, RecordError, FileNotFoundError) as err:
        console.fail(err)
    _print(console, result, verification, as_json)


def _register_s3(uri: str) -> None:
    """Register ``s3://`` before the first s3 location is read (tensorflow-io; not before:
    a process that registered it must leave through process_exit)."""
    if uri.startswith("s3://"):
        from backbone_regularizer.pipeline.object_store import configure_process

        configure_process()


def _print(console, result: dict, verification: dict | None, as_json: bool) -> None:
    """Print the lineage (and the verification); exit 1 when a file differs."""
    if as_json:
        payload = result if verification is None else result | {"verification": verification}
        console.echo(json.dumps(payload, indent=2, sort_keys=True))
    else:
        from backbone_regularizer.pipeline.lineage.format import format_lineage

        console.echo(format_lineage(result["tree"]))
        console.echo("")
        console.echo(format_summary_lines(result["summary"]))
        if verification is not None:
            from backbone_regularizer.pipeline.lineage.store import format_verification

            console.echo("")
            console.echo(format_verification(verification))
    console.echo(f"log: {console.path}", err=True)
    if verification is not None and verification["problems"]:
        files = ", ".join(sorted({p["file"] for p in verification["problems"]}))
        console.fail(
            f"Expected every file on the chain of {verification['pushed_model']} to match its "
            f"provenance record. Received: {len(verification['problems'])} difference(s): "
            f"{files}"
        )


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
        ids = ", ".join(
            f"{name} {trainer[key]}"
            for name, key in (("execution", "execution_id"), ("run", "run"))
            if trainer.get(key)
        )
        lines.append(
            f"  trained by {trainer['node']}{f' ({ids})' if ids else ''}; logs "
            f"{trainer['model_run']}"
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

"""`backbone-reg run` and `backbone-reg add-span`: the local pipeline and the demo's new data.

Both keep the console for their own lines (a line as each pipeline step starts and ends, the
Trainer's progress, the summary) and send everything else to a log file under the run's
folder (``backbone_regularizer.pipeline.cli.console``). ``backbone_regularizer.pipeline.cli.main``
adds them to the group.
"""

from __future__ import annotations

import json
import time

import click

from backbone_regularizer.pipeline.cli.console import Console, format_step, is_verbose, log_path
from backbone_regularizer.pipeline.cli.errors import fail as _fail

VERBOSE_HELP = "Also stream the log file (TFX, Beam, Keras, warnings) to stderr."


def _log_folder(config_path) -> str:
    """The run's local folder, read from the config file without checking the rest of it:
    checking imports Keras and TensorFlow, whose start-up output belongs in the log."""
    from backbone_regularizer.pipeline.config import local_folder_of

    try:
        return local_folder_of(config_path)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)


def _load_config(path, console: Console):
    from backbone_regularizer.pipeline.config import PipelineConfig

    try:
        return PipelineConfig.from_file(path) if path else PipelineConfig()
    except (ValueError, FileNotFoundError) as err:
        console.fail(err)


def _is_demo(config) -> bool:
    from backbone_regularizer.pipeline.config import PipelineConfig

    default = PipelineConfig()
    return (
        config.data_root == default.data_root
        and config.backbone.keras_file == default.backbone.keras_file
    )


def _demo_data(config) -> None:
    """Build the embedded demo's data and source backbone unless already built."""
    from pathlib import Path

    from backbone_regularizer.pipeline.demo.data import ensure_demo_data

    ensure_demo_data(Path(config.backbone.keras_file).parent)


@click.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="JSON config.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True, help=VERBOSE_HELP)
@click.pass_context
def run_command(ctx, config_path, as_json, verbose):
    """Run the pipeline locally (LocalDagRunner, sqlite ML Metadata, Beam DirectRunner).

    Without --config this is the embedded demo: digits 5-9 fine-tuned from a MobileNetV2
    pre-trained on digits 0-4, everything under runs/demo (built on first use).

    Prints a line as each step starts and ends, the Trainer's progress, then the summary.
    Everything else goes to <root>/logs/run-<time>.log (its path is printed); exits 1 naming
    the failed step when one fails.
    """
    folder = _log_folder(config_path)  # a URI root needs a local `metadata` file
    console = Console(
        log_path(folder, "run"), is_verbose(ctx, verbose), progress=True, progress_err=as_json
    )
    with console:
        config = _load_config(config_path, console)

        def say(text: str) -> None:
            console.echo(text, err=as_json)  # with --json, stdout holds the JSON alone

        say(f"running pipeline {config.pipeline_name} (root {config.root})")
        say(f"log: {console.path}")
        if _is_demo(config):
            say(format_step("demo data", "started"))
            started = time.perf_counter()
            _demo_data(config)
            say(format_step("demo data", "ready", seconds=time.perf_counter() - started))
        seconds = _run_pipeline(config, console, say)
        from backbone_regularizer.pipeline.lineage.report import write_run_report
        from backbone_regularizer.pipeline.lineage.summary import collect, format_summary

        summary = collect(config, seconds)
        summary["report"] = write_run_report(config, summary)
        if as_json:
            console.echo(json.dumps(summary, indent=2))
        else:
            console.echo(format_summary(summary))
            console.echo(f"  run report: {summary['report']}")


def _run_pipeline(config, console: Console, say) -> float:
    from backbone_regularizer.pipeline.local_runner import FAILED, STARTED, prepare_store, run_local
    from backbone_regularizer.pipeline.object_store import ObjectStoreError

    try:
        prepare_store(config)  # fail in one line, before TFX starts, on a bad s3:// store
    except (ObjectStoreError, ValueError) as err:
        console.fail(err)
    failed = []

    def on_step(event) -> None:
        seconds = None if event.status == STARTED else event.seconds
        say(format_step(event.node, event.status, event.index, event.total, seconds))
        if event.status == FAILED:
            failed.append(event.node)

    try:
        return run_local(config, on_step=on_step)
    except Exception as err:  # noqa: BLE001 - a failed step fails the run, reported below
        console.fail(err, step=failed[0] if failed else "pipeline")


@click.command("add-span")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="JSON config.")
@click.option("-v", "--verbose", is_flag=True, help=VERBOSE_HELP)
@click.pass_context
def add_span_command(ctx, config_path, verbose):
    """Write the next span of demo images (new data for the next `run`)."""
    from pathlib import Path

    console = Console(log_path(_log_folder(config_path), "add-span"), is_verbose(ctx, verbose))
    with console:
        config = _load_config(config_path, console)
        if not _is_demo(config):
            console.fail(
                "add-span writes demo images only. Expected the demo's data_root "
                f"and backbone. Received: data_root={config.data_root!r}"
            )
        try:
            from backbone_regularizer.pipeline.demo import data as demo_data

            _demo_data(config)
            span = demo_data.add_span(Path(config.data_root).parent)
        except (OSError, ValueError) as err:
            console.fail(err)
        console.echo(f"wrote span-{span} under {config.data_root}")
        console.echo(f"log: {console.path}", err=True)

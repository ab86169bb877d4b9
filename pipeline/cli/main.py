"""`backbone-reg`: a thin command line over the library functions."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings

import click

from backbone_regularizer.pipeline.cli.errors import fail as _fail
from backbone_regularizer.pipeline.process_exit import run_and_exit

# Commands that keep the console for their own lines and write everything else to a log file.
LOGGED_COMMANDS = frozenset({"run", "add-span", "compile", "lineage"})

_IMPORT_HELP = (
    "Import this module before loading (registers custom classes); repeatable. Found on "
    "PYTHONPATH or in the working directory. keras_hub is imported automatically when the "
    "file holds KerasHub classes."
)


def _importable_from_cwd(custom_modules) -> None:
    """Let ``--import my_layers`` find ``./my_layers.py``, as ``python -m`` would: a console
    script's sys.path holds its own bin folder, not the working directory."""
    if custom_modules and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


class _ExitingGroup(click.Group):
    """The console script's group: finishes through ``run_and_exit`` (see process_exit).

    Called as ``main()`` (the ``backbone-reg`` script, ``python -m
    backbone_regularizer.pipeline.cli.main``) it leaves
    with ``os._exit`` and the command's exit code, so a command that used ``s3://`` does not
    abort with 134 at interpreter teardown (tensorflow/io#2039). ``CliRunner`` calls
    ``main.main(...)`` and is unaffected.
    """

    def __call__(self, *args, **kwargs):
        run_and_exit(lambda: self.main(*args, **kwargs))


@click.group(cls=_ExitingGroup)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log progress; run, add-span, compile and lineage also stream their log file.",
)
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Regularize pre-trained Keras backbones the right way, and check that it worked."""
    from backbone_regularizer.pipeline.cli.console import CurrentStderrHandler

    ctx.obj = {"verbose": verbose}
    if ctx.invoked_subcommand not in LOGGED_COMMANDS:
        # These print to the terminal directly: keep TensorFlow's C++ start-up chatter and
        # google-api-core's Python 3.10 notice out of it (set before TensorFlow is imported).
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        warnings.filterwarnings("ignore", category=FutureWarning)
    # run, add-span, compile and lineage send every record (INFO and up), TensorFlow's C++
    # logs and Python warnings to their log file (backbone_regularizer.pipeline.cli.console);
    # elsewhere, stderr.
    logging.root.setLevel(logging.INFO if verbose else logging.WARNING)
    if not any(isinstance(h, CurrentStderrHandler) for h in logging.root.handlers):
        logging.root.addHandler(CurrentStderrHandler())


@main.command()
@click.argument("src", type=click.Path(dir_okay=True))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--l1", type=float, default=0.0, show_default=True, help="L1 factor.")
@click.option(
    "--l2", type=float, default=None, help="L2 factor [default: 1e-4 unless --l1/--l2-sp]."
)
@click.option(
    "--l2-sp",
    "l2_sp",
    type=float,
    default=0.0,
    help="L2-SP factor alpha: alpha/2*||w - w0||^2 toward the pre-trained weights w0.",
)
@click.option("--include-bias", is_flag=True, help="Also regularize biases.")
@click.option("--include-norm", is_flag=True, help="Also regularize normalization gamma/beta.")
@click.option("--include", "include", multiple=True, help="Regex on layer paths to include.")
@click.option("--exclude", "exclude", multiple=True, help="Regex on layer paths to exclude.")
@click.option("--layer-type", "layer_types", multiple=True, help="Restrict to these classes.")
@click.option("--freeze-until", default=None, help="Freeze every layer before this one.")
@click.option("--freeze-fraction", type=float, default=None, help="Freeze this fraction.")
@click.option(
    "--no-freeze-batchnorm", is_flag=True, help="Leave BatchNormalization layers trainable."
)
@click.option(
    "--unsafe-load",
    is_flag=True,
    help="Load SRC with safe_mode=False (Lambda layers). Only for trusted files.",
)
@click.option("--import", "custom_modules", multiple=True, metavar="MODULE", help=_IMPORT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def regularize(
    src,
    dst,
    l1,
    l2,
    l2_sp,
    include_bias,
    include_norm,
    include,
    exclude,
    layer_types,
    freeze_until,
    freeze_fraction,
    no_freeze_batchnorm,
    unsafe_load,
    custom_modules,
    as_json,
):
    """Regularize SRC.keras into DST.keras and verify the written file.

    Writes DST and DST's report (<DST stem>.report.json). Exits 0 only when every check passed.
    """
    from backbone_regularizer.components.regularizer.checks import VerificationError
    from backbone_regularizer.components.regularizer.spec import RegularizationSpec
    from backbone_regularizer.components.regularizer.workflow import (
        regularize_file,
        report_path_for,
    )

    if l2 is None:
        l2 = 0.0 if l1 or l2_sp else 1e-4
    _importable_from_cwd(custom_modules)
    try:
        spec = RegularizationSpec(
            l1=l1,
            l2=l2,
            l2_sp=l2_sp,
            include_bias=include_bias,
            include_norm=include_norm,
            include=include,
            exclude=exclude,
            layer_types=layer_types,
            freeze_until=freeze_until,
            freeze_fraction=freeze_fraction,
            freeze_batchnorm=not no_freeze_batchnorm,
        )
        report = regularize_file(
            src, dst, spec, safe_mode=not unsafe_load, custom_modules=custom_modules
        )
    except VerificationError as err:
        click.echo(f"verification failed: {err}", err=True)
        sys.exit(2)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    if as_json:
        click.echo(report.to_json())
        return
    counts = report.counts
    click.echo(f"wrote {dst} and {report_path_for(dst)}")
    click.echo(
        f"{report.regularizer_summary} on {counts['regularized']} weights "
        f"({counts['regularized_frozen']} frozen), {counts['skipped']} skipped"
    )
    for kind, row in counts["by_kind"].items():
        click.echo(f"  {kind:<12} regularized {row['regularized']:>4}  skipped {row['skipped']:>4}")
    click.echo(f"penalty at init: {report.penalty['total_in_loss']:.6g}")
    click.echo(f"weights sha256:  {report.baseline.weights_sha256}")
    checks = ", ".join(c["name"] for c in report.validation["reloaded"])
    click.echo(f"verified in memory and after reload: {checks}")
    click.echo(f"file format: {report.file['format']} ({'; '.join(report.file['why'])})")


@main.command()
@click.argument("model_path", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON on stdout.")
@click.option("--unsafe-load", is_flag=True, help="Load with safe_mode=False (trusted files).")
@click.option("--import", "custom_modules", multiple=True, metavar="MODULE", help=_IMPORT_HELP)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    help="Also write a PNG: coverage by weight kind and penalty by layer.",
)
def audit(model_path, as_json, unsafe_load, custom_modules, plot_path):
    """List which weights of MODEL.keras carry a regularizer. Changes nothing."""
    from backbone_regularizer.components.regularizer.audit import audit as audit_model
    from backbone_regularizer.components.regularizer.coverage_plot import write_audit_plot
    from backbone_regularizer.components.regularizer.keras_file import load_keras_model

    _importable_from_cwd(custom_modules)
    try:
        model = load_keras_model(
            model_path, safe_mode=not unsafe_load, custom_modules=custom_modules
        )
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    result = audit_model(model)
    if plot_path:
        write_audit_plot(model, plot_path)
        if not as_json:
            click.echo(f"wrote {plot_path}")
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    width = max(len(r["path"]) for r in result["weights"])
    for row in result["weights"]:
        mark = row["regularizer"] or ("MISSED" if row["kernel_like"] else "-")
        click.echo(f"{row['path']:<{width}}  {row['kind']:<10} {row['layer_type']:<20} {mark}")
    summary = result["summary"]
    click.echo(
        f"\n{summary['regularized']} of {summary['weights_total']} weights regularized; "
        f"{len(summary['missed'])} of {summary['kernel_like']} kernel-like weights missed"
    )


def _register_commands() -> None:
    from backbone_regularizer.pipeline.cli.kubeflow import compile_command, schedule_command
    from backbone_regularizer.pipeline.cli.lineage import lineage_command
    from backbone_regularizer.pipeline.cli.run import add_span_command, run_command

    commands = (run_command, add_span_command, compile_command, schedule_command, lineage_command)
    for command in commands:
        main.add_command(command)


_register_commands()

if __name__ == "__main__":
    main()

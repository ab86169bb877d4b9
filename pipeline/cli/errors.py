"""How every `backbone-reg` command reports a user error: one line on stderr, exit code 1."""

import sys

import click


def fail(err: Exception) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(1)

"""The `backbone-reg` command line (`pipeline.cli.main:main`): thin commands over the library."""

"""The `backbone-reg` command line (`backbone_regularizer.pipeline.cli.main:main`): thin commands
over the library."""

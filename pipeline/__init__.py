"""The backbone-regularizer pipeline: create_pipeline, Trainer module, runners and CLI."""

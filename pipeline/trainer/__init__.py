"""The Trainer's module (`pipeline.trainer.module.run_fn`) and what it is built from: its
config, input data, head, baselines, the base-model checks and the serving export."""

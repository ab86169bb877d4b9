"""The config a cluster would use (gs:// everywhere) and the constants the tests compare to."""

from __future__ import annotations

from backbone_regularizer.pipeline.config import BackboneConfig, PipelineConfig

IMAGE = "europe-docker.pkg.dev/my-project/ml/backbone-regularizer:0.1.0"
ROOT = "gs://my-bucket/backbone-regularizer/root"
DATAFLOW_ARGS = (
    "--runner=DataflowRunner",
    "--project=my-project",
    "--region=europe-west4",
    "--temp_location=gs://my-bucket/backbone-regularizer/tmp",
)
# Tiny Trainer settings: the in-pod tests really train with them.
TINY_TRAINER = {"num_classes": 2, "epochs": 1, "batch_size": 8, "augment": False, "patience": 1}


def cluster_config(**changes) -> PipelineConfig:
    values = dict(
        pipeline_name="backbone-regularizer-kfp",
        root="gs://my-bucket/backbone-regularizer",
        data_root="gs://my-bucket/backbone-regularizer/images",
        backbone=BackboneConfig(weights="gs://my-bucket/backbone-regularizer/source.weights.h5"),
        push_destination="gs://my-bucket/backbone-regularizer/serving",
        trainer=TINY_TRAINER,
        beam_args=DATAFLOW_ARGS,
    )
    values.update(changes)
    return PipelineConfig(**values)

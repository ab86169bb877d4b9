"""The project's pipeline: images -> backbone -> regularized backbone -> the stock Trainer."""

from __future__ import annotations

from tfx.components import Trainer
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import trainer_pb2

from backbone_regularizer.components import (
    BackboneLoader,
    BackboneRegularizer,
    ImageExampleGen,
    RegularizationSpec,
)


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_path: str,
    run_fn: str,
    num_classes: int,
    metadata_connection_config=None,
) -> tfx_pipeline.Pipeline:
    example_gen = ImageExampleGen(input_base=data_path)
    backbone = BackboneLoader(
        architecture="MobileNetV2",
        input_shape=[32, 32, 3],
        weights="none",
        kwargs={"alpha": 0.35},
    )
    regularizer = BackboneRegularizer(
        backbone=backbone.outputs["backbone"],
        spec=RegularizationSpec(l2=1e-4, freeze_batchnorm=True),
    )
    trainer = Trainer(
        run_fn=run_fn,
        examples=example_gen.outputs["examples"],
        base_model=regularizer.outputs["model"],
        train_args=trainer_pb2.TrainArgs(splits=["train"]),
        eval_args=trainer_pb2.EvalArgs(splits=["eval"]),
        custom_config={"num_classes": num_classes},
    )
    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, backbone, regularizer, trainer],
        metadata_connection_config=metadata_connection_config,
    )

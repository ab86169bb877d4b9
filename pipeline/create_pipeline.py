"""``create_pipeline``: images -> statistics/schema/validation -> backbone -> regularizer ->
Trainer -> Evaluator (absolute thresholds + latest pushed model + per-class guard) -> Pusher
(only when blessed).

One label vocabulary runs through it: ImageExampleGen records it on the Examples, the Trainer
exports it with the model, LatestPushedModel refuses a production model whose label map differs
and the Evaluator's per-class guard requires every class production knew (docs/retraining.md).
"""

from __future__ import annotations

import os

import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma

# Not `from tfx import v1 as tfx`: tfx.v1 also imports its Google Cloud extensions
# (google.cloud.aiplatform), about a third of TFX's import time, which nothing here uses.
from tfx.components import ExampleValidator, Pusher, SchemaGen, StatisticsGen
from tfx.dsl.components.common.importer import Importer
from tfx.orchestration import metadata
from tfx.orchestration.pipeline import Pipeline
from tfx.proto.pusher_pb2 import PushDestination
from tfx.proto.trainer_pb2 import EvalArgs, TrainArgs
from tfx.types import standard_artifacts

from backbone_regularizer.components.backbone_loader import BackboneLoader
from backbone_regularizer.components.backbone_loader.presets import LOCAL, preset_kind
from backbone_regularizer.components.image_ingestion import ImageExampleGen
from backbone_regularizer.components.image_ingestion.images import LABEL_KEY, SPAN_KEY
from backbone_regularizer.components.image_ingestion.splits import EVAL_SPLIT, HOLDOUT_SPLIT
from backbone_regularizer.components.latest_pushed import LatestPushedModel
from backbone_regularizer.components.latest_pushed.evaluator import Evaluator
from backbone_regularizer.components.latest_pushed.guard import class_guard, label_slice
from backbone_regularizer.components.regularizer import BackboneRegularizer
from backbone_regularizer.pipeline.config import PipelineConfig
from backbone_regularizer.pipeline.object_store import with_beam_plugin
from backbone_regularizer.pipeline.trainer import RUN_FN
from backbone_regularizer.pipeline.trainer.component import Trainer
from backbone_regularizer.pipeline.trainer.export import PROBABILITIES_KEY

PREDICTION_KEY = PROBABILITIES_KEY
ACCURACY = "SparseCategoricalAccuracy"
# Custom property of the imported backbone artifact: SHA-256 of its model.keras.
IMPORTED_SHA256_PROPERTY = "file_sha256"


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """The blessing rules, on the overall slice: accuracy >= min_accuracy and no more than
    max_accuracy_drop below the baseline; on every label slice (the per-class guard, unless
    ``max_class_accuracy_drop`` is null): no more than max_class_accuracy_drop below it.

    Metrics are also sliced by label and by span (the holdout is span -1) for the report.
    The overall thresholds name the overall slice: a threshold without a slice would apply
    to every slice.
    """
    overall = tfma.PerSliceMetricThreshold(
        slicing_specs=[tfma.SlicingSpec()],
        threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.min_accuracy}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -config.max_accuracy_drop},
            ),
        ),
    )
    thresholds = [overall]
    if config.max_class_accuracy_drop is not None:
        thresholds.append(class_guard(LABEL_KEY, config.max_class_accuracy_drop))
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key=LABEL_KEY,
                prediction_key=PREDICTION_KEY,
            )
        ],
        slicing_specs=[
            tfma.SlicingSpec(),
            label_slice(LABEL_KEY),
            tfma.SlicingSpec(feature_keys=[SPAN_KEY]),
        ],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name=ACCURACY, per_slice_thresholds=thresholds),
                    tfma.MetricConfig(class_name="ExampleCount"),
                ]
            )
        ],
    )


def backbone_node(config: PipelineConfig, imported_sha256: str | None = None):
    """BackboneLoader from keras.applications or a KerasHub preset, or an Importer of a ready
    ``.keras`` model.

    TFX's Importer reuses an artifact registered earlier with the same URI and properties, so
    a file rewritten in place would be ignored. ``imported_sha256`` (the file's digest, see
    ``local_runner.imported_model_sha256``) becomes a custom property: a changed file is a
    new artifact and everything downstream re-runs.
    """
    backbone = config.backbone
    if backbone.keras_file:
        return Importer(
            source_uri=config.path(backbone.keras_file),
            artifact_type=standard_artifacts.Model,
            custom_properties={IMPORTED_SHA256_PROPERTY: imported_sha256}
            if imported_sha256
            else None,
        ).with_id("backbone_importer")
    if backbone.keras_hub_preset:
        preset = backbone.keras_hub_preset
        if preset_kind(preset) == LOCAL:
            preset = config.path(preset)
        return BackboneLoader(
            preset=preset,
            weights=backbone.weights,
            input_shape=None if backbone.input_shape is None else list(backbone.input_shape),
        )
    weights = backbone.weights
    if weights not in ("imagenet", "none"):
        weights = config.path(weights)
    return BackboneLoader(
        architecture=backbone.architecture,
        input_shape=list(backbone.input_shape),
        weights=weights,
        kwargs=dict(backbone.kwargs),
    )


def create_pipeline(
    config: PipelineConfig,
    pipeline_root: str | None = None,
    metadata_connection_config=None,
    imported_sha256: str | None = None,
) -> Pipeline:
    """Build the whole pipeline from ``config``; reads nothing from the environment.

    Args:
        config: the validated configuration (``PipelineConfig()`` is the demo).
        pipeline_root: where artifacts go; defaults to ``config.pipeline_root``.
        metadata_connection_config: ML Metadata connection; None lets the runner decide
            (KFP provides its own); the local runner passes a sqlite config.
        imported_sha256: with ``backbone.keras_file``, the SHA-256 of its ``model.keras``
            (see ``backbone_node``); the local runner passes it.
    """
    example_gen = ImageExampleGen(
        input_base=config.path(config.data_root),
        span_pattern=config.span_pattern,
        train_eval_ratio=config.train_eval_ratio,
        shards_per_split=config.shards_per_split,
        labels=config.labels,
        grow_labels=config.grow_labels,
        span_window=config.span_window,
        holdout=config.path(config.holdout) if config.holdout else None,
    )
    # Sketch-based top-k and unique counts: TFDV's default counts every distinct value of
    # every string feature in a Beam GroupByKey, and each encoded image is a distinct value,
    # so in-process (DirectRunner) the step held every image: ~70 KB per 224x224 image.
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"],
        stats_options=tfdv.StatsOptions(use_sketch_based_topk_uniques=True),
    )
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"])
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    backbone = backbone_node(config, imported_sha256)
    backbone_channel = (
        backbone.outputs["result"]
        if isinstance(backbone, Importer)
        else backbone.outputs["backbone"]
    )
    regularizer = BackboneRegularizer(
        backbone=backbone_channel,
        spec=config.regularization_spec(),
        safe_mode=config.safe_mode,
        custom_modules=config.custom_modules,
    )
    trainer = Trainer(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        base_model=regularizer.outputs["model"],
        train_args=TrainArgs(splits=["train"]),
        eval_args=EvalArgs(splits=["eval"]),
        custom_config=config.trainer_config().to_dict(),
    )
    baseline = LatestPushedModel(
        model=trainer.outputs["model"],
        push_destination=config.serving_dir,
        grow_labels=int(config.grow_labels),
    ).with_id("latest_pushed_model")
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["baseline"],
        eval_config=eval_config(config),
        example_splits=[EVAL_SPLIT, HOLDOUT_SPLIT] if config.holdout else [EVAL_SPLIT],
    )
    pusher = Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=PushDestination(
            filesystem=PushDestination.Filesystem(base_directory=config.serving_dir)
        ),
    )
    components = [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        backbone,
        regularizer,
        trainer,
        baseline,
        evaluator,
        pusher,
    ]
    pipeline_root = pipeline_root or config.pipeline_root
    return Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=with_beam_plugin(
            config.beam_args, [pipeline_root, *config.locations().values()]
        ),
    )


def local_metadata(config: PipelineConfig):
    os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    return metadata.sqlite_metadata_connection_config(config.metadata_path)

"""ImageExampleGen: a FileBasedExampleGen that ingests ``<span>/<label>/*.{png,jpg,jpeg}``."""

from __future__ import annotations

from tfx.components.example_gen import input_processor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import range_config_pb2

from backbone_regularizer.components.image_ingestion import shards, spans, splits
from backbone_regularizer.components.image_ingestion.custom_config import (
    SHARDS_PER_SPLIT_KEY,
    make_custom_config,
)
from backbone_regularizer.components.image_ingestion.executor import Executor


class ImageExampleGen(FileBasedExampleGen):
    """Turns a folder of class sub-folders of images into ``train``/``eval`` tf.Examples.

    Layout: ``<input_base>/<span folder>/<label>/<name>.{png,jpg,jpeg}``, or
    ``<input_base>/<label>/...`` without spans. Each example holds ``image`` (the encoded file,
    bytes), ``label`` (int64, index of the class folder in sorted order), ``label_name`` (bytes)
    and ``filename`` (bytes, ``<label>/<name>`` relative to the span folder). The split is a
    hash of ``filename``, so a file keeps its split across runs and spans. Each split is
    written as gzipped TFRecord shards, ``Split-<name>/data_tfrecord-<i>-of-<n>.gz``: about one
    per thousand images and at least one per Beam worker unless ``shards_per_split`` says how
    many; the same files for the same inputs (see ``shards``).

    The output ``examples`` artifact carries, besides TFX's ``span`` and ``input_fingerprint``,
    the custom properties ``label_map`` (JSON), ``num_classes``, ``count_train``,
    ``count_eval``, ``unreadable_images`` and ``skipped_non_image_files`` (see ``report``).
    The run fails if a split ends up empty or no class folder exists.

    >>> example_gen = ImageExampleGen(input_base="gs://bucket/pets", span_pattern="span-{SPAN}")
    >>> statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        input_base: str,
        span_pattern: str | None = None,
        train_eval_ratio: tuple[int, int] = splits.DEFAULT_TRAIN_EVAL_RATIO,
        range_config: range_config_pb2.RangeConfig | None = None,
        shards_per_split: int | None = None,
    ):
        """Builds the component; argument errors surface here, at pipeline-build time.

        Args:
            input_base: folder (local or ``gs://``) holding the span folders, or the class
                folders when ``span_pattern`` is ``None``. Not checked for existence here:
                scheduled pipelines are often built before the data lands.
            span_pattern: span folder pattern relative to ``input_base`` with one ``{SPAN}``
                (or ``{SPAN:width}``; ``{YYYY}{MM}{DD}`` and ``{VERSION}`` also work), e.g.
                ``"span-{SPAN}"``. The latest span is ingested unless ``range_config`` pins
                one. ``None`` reads the class folders directly under ``input_base``.
            train_eval_ratio: hash buckets for ``train`` and ``eval``; ``(4, 1)`` sends about
                80% of files to ``train``.
            range_config: optional ``RangeConfig`` pinning a span (``static_range`` with equal
                start and end, e.g. to backfill); needs ``span_pattern``.
            shards_per_split: TFRecord files per split (at most one per image); ``None``
                derives it from the number of images and Beam workers (``shards``). Set it to
                at least the number of training workers that read one shard set each.

        Raises:
            ValueError: ``input_base`` is not a non-empty string; ``span_pattern`` is empty,
                absolute, has glob characters or no span spec; ``train_eval_ratio`` is not two
                positive ints; ``range_config`` is not a ``RangeConfig``, is given without
                ``span_pattern``, or is one ExampleGen rejects.
        """
        if not isinstance(input_base, str) or not input_base.strip():
            raise ValueError(
                "Expected `input_base` to be a non-empty folder path or URI. "
                f"Received: input_base={input_base!r}"
            )
        input_config = spans.make_input_config(span_pattern)
        output_config = splits.make_output_config(train_eval_ratio)
        shards.check_shards_per_split(shards_per_split)
        if range_config is not None:
            if not isinstance(range_config, range_config_pb2.RangeConfig):
                raise ValueError(
                    "Expected `range_config` to be a range_config_pb2.RangeConfig or None. "
                    f"Received: range_config={range_config!r}"
                )
            if span_pattern is None:
                raise ValueError(
                    "Expected `span_pattern` (e.g. 'span-{SPAN}') when `range_config` is set. "
                    "Received: span_pattern=None"
                )
            try:
                # The driver's own checks, run now instead of at execution; no I/O happens here.
                input_processor.FileBasedInputProcessor(
                    input_base, input_config.splits, range_config
                )
            except ValueError as error:
                raise ValueError(
                    "Expected a `range_config` that selects exactly one span. "
                    f"Received: range_config={range_config} ({error})"
                ) from error
        super().__init__(
            input_base=input_base,
            input_config=input_config,
            output_config=output_config,
            range_config=range_config,
            custom_config=make_custom_config({SHARDS_PER_SPLIT_KEY: shards_per_split}),
        )

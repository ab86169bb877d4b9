"""Beam transforms: listed image files -> tf.Examples, and per-split example counts.

>>> examples = pipeline | ImagesToExamples(list_image_folder(root))
"""

from __future__ import annotations

import json

import apache_beam as beam
import tensorflow as tf
from absl import logging
from tfx.dsl.io import fileio

from backbone_regularizer.components.image_ingestion.images import (
    ImageFile,
    ImageFolder,
    build_example,
    is_decodable,
)

METRICS_NAMESPACE = "image_ingestion"


class _ToExampleFn(beam.DoFn):
    """Reads one image file; emits its tf.Example, or logs and counts it as unreadable."""

    def __init__(self, label_map: dict[str, int]):
        super().__init__()
        self._label_map = dict(label_map)
        self._unreadable = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "unreadable_images")

    def process(self, image: ImageFile):
        # A read error (permissions, network) is not a bad image: let it fail the run.
        with fileio.open(image.path, "rb") as f:
            data = f.read()
        if not is_decodable(data):
            logging.warning("ImageExampleGen: unreadable image %s (not ingested)", image.path)
            self._unreadable.inc()
            return
        label = self._label_map[image.label_name]
        yield build_example(data, label, image.label_name, image.filename, image.span)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def ImagesToExamples(pipeline: beam.Pipeline, folder: ImageFolder) -> beam.PCollection:
    """Decodes-checks every listed image and builds its tf.Example.

    Args:
        pipeline: the Beam pipeline.
        folder: the listing of one span folder.

    Returns:
        A PCollection of ``tf.train.Example``; unreadable images are logged, counted in the
        ``image_ingestion/unreadable_images`` Beam metric and left out.
    """
    return (
        pipeline
        | "ListImages" >> beam.Create(folder.images)
        | "ToExample" >> beam.ParDo(_ToExampleFn(folder.label_map))
    )


def write_split_counts(example_splits: dict[str, beam.PCollection], path: str) -> None:
    """Adds branches that write ``{"<split>": <count>, ...}`` as JSON to the file ``path``.

    Empty splits are written as 0, so the reader sees every split.

    Args:
        example_splits: split name -> PCollection of examples, as ExampleGen builds them.
        path: the output file (local or ``gs://``); written when the pipeline runs.
    """
    counts = [
        pcoll
        | f"Count[{name}]" >> beam.combiners.Count.Globally()
        | f"Name[{name}]" >> beam.Map(lambda count, name=name: (name, count))
        for name, pcoll in example_splits.items()
    ]
    _ = (
        counts
        | "FlattenCounts" >> beam.Flatten()
        | "CountsToDict" >> beam.combiners.ToDict()
        | "CountsToJson" >> beam.Map(lambda counts: json.dumps(counts, sort_keys=True))
        | "WriteCounts" >> beam.io.WriteToText(path, shard_name_template="")
    )

"""Beam transforms: planned shards -> gzipped TFRecord files of tf.Examples, and split counts.

One element per shard (``shards.Shard``): a worker reads the shard's images one at a time,
checks each decodes, and streams its tf.Example into the shard's file. No step groups or
shuffles image bytes, so memory stays one image per worker whatever the data size, and the
pipeline scales with the number of shards (``shards.shard_count`` makes at least one per
worker). Each shard is written to a unique scratch name, then renamed to its final name, so a
retried or duplicated bundle never leaves a partial file where readers glob.

>>> results = pipeline | WriteShards(plan_files, label_map, split_dirs, scratch_dir)
>>> write_split_counts(results, counts_path)
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence

import apache_beam as beam
import tensorflow as tf
from absl import logging
from tfx.dsl.io import fileio

from backbone_regularizer.components.image_ingestion.images import build_example, is_decodable
from backbone_regularizer.components.image_ingestion.shards import Shard

METRICS_NAMESPACE = "image_ingestion"


def write_plan(shards: Sequence[Shard], folder: str) -> list[str]:
    """Writes one JSON file per shard under ``folder`` and returns their paths.

    The Beam graph then carries only these paths, not the image listing: a pipeline graph
    holding a million file names would exceed what Dataflow accepts.
    """
    fileio.makedirs(folder)
    paths = []
    for shard in shards:
        path = os.path.join(folder, f"{shard.split}-{shard.file_name}.json")
        with fileio.open(path, "w") as f:
            f.write(json.dumps(shard.to_json()))
        paths.append(path)
    return paths


class _WriteShardFn(beam.DoFn):
    """Writes one planned shard; emits ``(split, written, unreadable)``."""

    def __init__(self, label_map: Mapping[str, int], split_dirs: Mapping[str, str], scratch: str):
        super().__init__()
        self._label_map = dict(label_map)
        self._split_dirs = dict(split_dirs)
        self._scratch = scratch
        self._written = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "examples_written")
        self._unreadable = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "unreadable_images")

    def process(self, plan_path: str):
        with fileio.open(plan_path, "r") as f:
            shard = Shard.from_json(json.loads(f.read()))
        scratch = os.path.join(self._scratch, f"{shard.split}-{shard.file_name}.{uuid.uuid4().hex}")
        written = unreadable = 0
        # TFRecord framing needs TensorFlow's writer; it writes through the same file systems
        # as tfx.dsl.io.fileio (tf.io.gfile: local, gs://, s3:// with tensorflow-io).
        with tf.io.TFRecordWriter(scratch, tf.io.TFRecordOptions(compression_type="GZIP")) as out:
            for image in shard.images:
                # A read error (permissions, network) is not a bad image: let it fail the run.
                with fileio.open(image.path, "rb") as f:
                    data = f.read()
                if not is_decodable(data):
                    logging.warning(
                        "ImageExampleGen: unreadable image %s (not ingested)", image.path
                    )
                    unreadable += 1
                    continue
                label = self._label_map[image.label_name]
                example = build_example(data, label, image.label_name, image.filename)
                # deterministic: feature map keys sorted, the same bytes in every process.
                out.write(example.SerializeToString(deterministic=True))
                written += 1
        fileio.rename(scratch, os.path.join(self._split_dirs[shard.split], shard.file_name), True)
        self._written.inc(written)
        self._unreadable.inc(unreadable)
        yield shard.split, written, unreadable


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def WriteShards(
    pipeline: beam.Pipeline,
    plan_paths: Sequence[str],
    label_map: Mapping[str, int],
    split_dirs: Mapping[str, str],
    scratch_dir: str,
) -> beam.PCollection:
    """Writes every planned shard (``write_plan``) into its split's folder.

    Args:
        pipeline: the Beam pipeline.
        plan_paths: the shard plan files, one per shard.
        label_map: class folder name -> label.
        split_dirs: split name -> the folder its shard files go to (must exist).
        scratch_dir: where files are written before being renamed into place (must exist).

    Returns:
        A PCollection of ``(split, examples written, unreadable images)``, one per shard;
        unreadable images are logged, counted in the ``image_ingestion/unreadable_images``
        Beam metric and left out.
    """
    return (
        pipeline
        | "ListShards" >> beam.Create(list(plan_paths))  # reshuffled: shards spread to workers
        | "WriteShard" >> beam.ParDo(_WriteShardFn(label_map, split_dirs, scratch_dir))
    )


def write_split_counts(results: beam.PCollection, splits: Sequence[str], path: str) -> None:
    """Adds branches that write ``{"<split>": <examples written>, ...}`` as JSON to ``path``.

    Every split in ``splits`` is in the file, 0 when none of its shards wrote an example.

    Args:
        results: ``(split, written, unreadable)`` per shard, from ``WriteShards``.
        splits: the split names.
        path: the output file (local or ``gs://``); written when the pipeline runs.
    """
    zeros = dict.fromkeys(splits, 0)
    _ = (
        results
        | "WrittenPerShard" >> beam.Map(lambda result: (result[0], result[1]))
        | "SumPerSplit" >> beam.CombinePerKey(sum)
        | "CountsToDict" >> beam.combiners.ToDict()
        | "CountsToJson" >> beam.Map(lambda counts: json.dumps({**zeros, **counts}, sort_keys=True))
        | "WriteCounts" >> beam.io.WriteToText(path, shard_name_template="")
    )

"""ImageExampleGen executor: lists the image folder, plans the shards, writes them with Beam.

TFX's ``BaseExampleGenExecutor`` would hash-partition the examples with ``beam.Partition``,
then ``Reshuffle`` and ``WriteToTFRecord`` them, which lets the runner pick the number of files
(one per split on the DirectRunner) and their contents (random keys: not the same twice). This
executor keeps TFX's split rule (``splits.assign_split``: the same hash of ``filename``) and
its file names, but decides the shards itself (``shards``): their number from the data size and
the Beam workers (or ``shards_per_split``), their contents round-robin over the sorted file
names. Identical inputs give identical files. The counts and label map are recorded on the
Examples artifact once the pipeline has run. What is ingested (the label vocabulary, the window
of spans, the holdout split) is decided by ``plan.plan_ingestion`` before Beam starts.
"""

from __future__ import annotations

import json
import os
from typing import Any, TypeVar

from absl import logging
from google.protobuf import message as message_lib
from tfx import types
from tfx.components.example_gen import utils
from tfx.components.example_gen.write_split import to_file_format_str
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from backbone_regularizer.components.image_ingestion.custom_config import (
    SHARDS_PER_SPLIT_KEY,
    read_custom_config,
)
from backbone_regularizer.components.image_ingestion.images import (
    FILENAME_KEY,
    IMAGE_EXTENSIONS,
    ImageFile,
)
from backbone_regularizer.components.image_ingestion.plan import IngestionOptions, plan_ingestion
from backbone_regularizer.components.image_ingestion.report import IngestionReport
from backbone_regularizer.components.image_ingestion.shards import (
    beam_worker_count,
    check_shards_per_split,
    plan_shards,
)
from backbone_regularizer.components.image_ingestion.splits import (
    HOLDOUT_SPLIT,
    SPLIT_NAMES,
    assign_split,
)
from backbone_regularizer.components.image_ingestion.transforms import (
    WriteShards,
    write_plan,
    write_split_counts,
)
from backbone_regularizer.components.provenance_step import recorded

EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
INPUT_BASE_KEY = standard_component_specs.INPUT_BASE_KEY
INPUT_CONFIG_KEY = standard_component_specs.INPUT_CONFIG_KEY
OUTPUT_CONFIG_KEY = standard_component_specs.OUTPUT_CONFIG_KEY
CUSTOM_CONFIG_KEY = standard_component_specs.CUSTOM_CONFIG_KEY
OUTPUT_DATA_FORMAT_KEY = standard_component_specs.OUTPUT_DATA_FORMAT_KEY
OUTPUT_FILE_FORMAT_KEY = standard_component_specs.OUTPUT_FILE_FORMAT_KEY

# Scratch folder inside the (per-execution) output artifact, beside the Split-* folders that
# readers glob; removed before Do returns (the whole artifact folder is emptied at the start
# of every attempt).
_SCRATCH_DIR = ".image_ingestion"
_COUNTS_FILE = "split_counts.json"

ProtoT = TypeVar("ProtoT", bound=message_lib.Message)


def _parse(json_text: str, message: ProtoT) -> ProtoT:
    proto_utils.json_to_proto(json_text, message)
    return message


def _train_eval_ratio(output_config: example_gen_pb2.Output) -> tuple[int, int]:
    """The ``(train, eval)`` hash buckets of the output config ``splits.make_output_config``
    builds; anything else is refused (the split rule hashes ``filename`` into those two)."""
    split_config = output_config.split_config
    names = tuple(split.name for split in split_config.splits)
    if names != SPLIT_NAMES or split_config.partition_feature_name != FILENAME_KEY:
        raise ValueError(
            f"Expected an output config with splits {list(SPLIT_NAMES)} partitioned on "
            f"{FILENAME_KEY!r} (splits.make_output_config). Received: splits={list(names)}, "
            f"partition_feature_name={split_config.partition_feature_name!r}"
        )
    train, eval_ = (split.hash_buckets for split in split_config.splits)
    return train, eval_


def _check_formats(exec_properties: dict[str, Any]) -> None:
    payload = exec_properties.get(OUTPUT_DATA_FORMAT_KEY) or example_gen_pb2.FORMAT_TF_EXAMPLE
    file_format = exec_properties.get(OUTPUT_FILE_FORMAT_KEY) or (
        example_gen_pb2.FORMAT_TFRECORDS_GZIP
    )
    if (payload, file_format) != (
        example_gen_pb2.FORMAT_TF_EXAMPLE,
        example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    ):
        raise ValueError(
            "Expected output_data_format=FORMAT_TF_EXAMPLE and output_file_format="
            "FORMAT_TFRECORDS_GZIP (ImageExampleGen writes gzipped tf.Examples). "
            f"Received: output_data_format={payload}, output_file_format={file_format}"
        )


def _fresh_dir(path: str) -> None:
    """An empty folder at ``path``: what an earlier attempt at the same URI left is removed."""
    if fileio.exists(path):
        fileio.rmtree(path)
    fileio.makedirs(path)


class Executor(base_beam_executor.BaseBeamExecutor):
    """Turns ``<span folder>/<label>/*.{png,jpg,jpeg}`` into sharded split tf.Examples."""

    @recorded("ImageExampleGen")
    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Writes the split Examples and records what was ingested as custom properties.

        Args:
            input_dict: unused (ExampleGen has no input artifacts).
            output_dict: ``examples``: one ``Examples`` artifact.
            exec_properties: ``input_base``, and ``input_config`` (one split, pattern resolved
                by the driver) / ``output_config`` / ``custom_config`` as JSON, as
                FileBasedExampleGen passes them (``custom_config``: ``custom_config.py``,
                ``shards_per_split`` and the ``plan.IngestionOptions``).

        Raises:
            ValueError: no class folders, no image files, or an empty split (the message names
                the split and the counts); more than one input split; an output config,
                format or ``shards_per_split`` ImageExampleGen does not write; a class name
                the label vocabulary lacks.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config = _parse(exec_properties[INPUT_CONFIG_KEY], example_gen_pb2.Input())
        output_config = _parse(exec_properties[OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
        if len(input_config.splits) != 1:
            raise ValueError(
                "Expected exactly one input split (the image folder); the train/eval split "
                f"comes from hashing. Received: {[s.name for s in input_config.splits]}"
            )
        ratio = _train_eval_ratio(output_config)
        _check_formats(exec_properties)
        settings = read_custom_config(exec_properties.get(CUSTOM_CONFIG_KEY))
        shards_per_split = check_shards_per_split(settings.get(SHARDS_PER_SPLIT_KEY))
        pattern = input_config.splits[0].pattern
        ingestion = plan_ingestion(
            exec_properties[INPUT_BASE_KEY],
            pattern,
            IngestionOptions.from_settings(settings),
            ratio,
        )
        folder = ingestion.hashed
        if not folder.images:
            raise ValueError(
                f"Expected image files ({', '.join(IMAGE_EXTENSIONS)}) in the class "
                f"folders under {folder.root!r}. Received: 0 image files, "
                f"{ingestion.skipped} other entries."
            )
        empty_classes = [name for name, n in folder.class_counts().items() if n == 0]
        if empty_classes:
            logging.warning("ImageExampleGen: classes with no image in this run: %s", empty_classes)
        logging.info(
            "ImageExampleGen: spans %s up to %s: %d classes (%s), %d image files, %d skipped "
            "non-image entries",
            list(ingestion.spans),
            folder.root,
            len(folder.label_map),
            ingestion.label_source,
            ingestion.image_files,
            ingestion.skipped,
        )

        split_names = utils.generate_output_split_names(input_config, output_config)
        by_split: dict[str, list[ImageFile]] = {name: [] for name in split_names}
        # Older spans of the window hold only train-hashed files (plan.py): the same rule.
        for image in folder.images:
            by_split[assign_split(image.filename, ratio)].append(image)
        if ingestion.holdout is not None:  # outside the hash: the same images in every run
            split_names = [*split_names, HOLDOUT_SPLIT]
            by_split[HOLDOUT_SPLIT] = list(ingestion.holdout.images)
        workers = beam_worker_count(self._beam_pipeline_args)
        plan = plan_shards(by_split, shards_per_split, workers)
        for name in split_names:
            logging.info(
                "ImageExampleGen: split %s: %d image files in %d shard(s) "
                "(shards_per_split=%s, %d Beam worker(s))",
                name,
                len(by_split[name]),
                sum(shard.split == name for shard in plan),
                shards_per_split,
                workers,
            )

        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        examples.split_names = artifact_utils.encode_split_names(split_names)
        split_dirs = {
            name: artifact_utils.get_split_uri(output_dict[EXAMPLES_KEY], name)
            for name in split_names
        }
        scratch = os.path.join(examples.uri, _SCRATCH_DIR)
        # The output URI is this step's alone, and a retried attempt gets the same one: what
        # a killed attempt left there (partial shards, its scratch folder) goes first.
        _fresh_dir(examples.uri)
        for path in (scratch, *split_dirs.values()):
            fileio.makedirs(path)
        try:
            plan_paths = write_plan(plan, os.path.join(scratch, "plan"))
            counts_path = os.path.join(scratch, _COUNTS_FILE)
            with self._make_beam_pipeline() as pipeline:
                results = pipeline | "WriteShards" >> WriteShards(
                    plan_paths, ingestion.label_map, split_dirs, scratch
                )
                write_split_counts(results, split_names, counts_path)
            with fileio.open(counts_path, "r") as f:
                split_counts = json.loads(f.read())
        finally:
            if fileio.exists(scratch):
                fileio.rmtree(scratch)
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(
            examples, to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP)
        )

        report = IngestionReport(
            label_map=ingestion.label_map,
            split_counts={name: int(split_counts.get(name, 0)) for name in split_names},
            image_files=ingestion.image_files,
            skipped=ingestion.skipped,
            label_source=ingestion.label_source,
            labels_added=ingestion.labels_added,
            spans=ingestion.spans,
            class_counts=ingestion.class_counts,
            span_counts=ingestion.span_counts,
        )
        if report.unreadable_images:
            logging.warning(
                "ImageExampleGen: %d of %d image files could not be decoded and were not "
                "ingested (listed in the warnings above).",
                report.unreadable_images,
                report.image_files,
            )
        logging.info("ImageExampleGen: %s", report.custom_properties())
        report.check()
        for key, value in report.custom_properties().items():
            if isinstance(value, int):
                examples.set_int_custom_property(key, value)
            else:
                examples.set_string_custom_property(key, value)

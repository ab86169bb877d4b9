"""ImageExampleGen executor: TFX's ExampleGen executor with an image-folder input source.

TFX's ``BaseExampleGenExecutor.Do`` builds the Beam pipeline, hash-partitions the examples
into splits and writes gzipped TFRecords. This subclass supplies the input PTransform, adds a
branch that counts examples per split, and records the counts and label map on the Examples
artifact once the pipeline has run.
"""

from __future__ import annotations

import json
import os
from typing import Any, TypeVar

import apache_beam as beam
from absl import logging
from google.protobuf import message as message_lib
from tfx import types
from tfx.components.example_gen import base_example_gen_executor, utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from backbone_regularizer.components.image_ingestion import spans
from backbone_regularizer.components.image_ingestion.images import (
    IMAGE_EXTENSIONS,
    ImageFolder,
    list_image_folder,
)
from backbone_regularizer.components.image_ingestion.report import IngestionReport
from backbone_regularizer.components.image_ingestion.transforms import (
    ImagesToExamples,
    write_split_counts,
)
from backbone_regularizer.components.provenance_step import recorded

EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
INPUT_BASE_KEY = standard_component_specs.INPUT_BASE_KEY
INPUT_CONFIG_KEY = standard_component_specs.INPUT_CONFIG_KEY
OUTPUT_CONFIG_KEY = standard_component_specs.OUTPUT_CONFIG_KEY

# Scratch folder inside the (per-execution) output artifact; removed before Do returns.
_COUNTS_DIR = ".image_ingestion_counts"
_COUNTS_FILE = "split_counts.json"

ProtoT = TypeVar("ProtoT", bound=message_lib.Message)


def _parse(json_text: str, message: ProtoT) -> ProtoT:
    proto_utils.json_to_proto(json_text, message)
    return message


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Turns ``<span folder>/<label>/*.{png,jpg,jpeg}`` into split tf.Examples."""

    def __init__(self, context: base_beam_executor.BaseBeamExecutor.Context | None = None):
        super().__init__(context)
        # Set by Do for one run only, so the Beam graph and the reported counts use one listing.
        self._folders: dict[str, ImageFolder] = {}
        self._counts_path: str | None = None

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        """Returns the PTransform that turns one input split pattern into tf.Examples."""

        @beam.ptransform_fn
        @beam.typehints.with_input_types(beam.Pipeline)
        def ImageFolderToExample(
            pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str
        ) -> beam.PCollection:
            folder = self._folders.get(split_pattern)
            if folder is None:
                root = spans.span_folder(exec_properties[INPUT_BASE_KEY], split_pattern)
                folder = list_image_folder(root)
            return pipeline | "ImagesToExamples" >> ImagesToExamples(folder)

        return ImageFolderToExample

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.PCollection]:
        """Builds TFX's split PCollections and, inside Do, a branch writing their sizes."""
        example_splits = super().GenerateExamplesByBeam(pipeline, exec_properties)
        if self._counts_path is not None:
            write_split_counts(example_splits, self._counts_path)
        return example_splits

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
                by the driver) / ``output_config`` as JSON, as FileBasedExampleGen passes them.

        Raises:
            ValueError: no class folders, no image files, or an empty split (the message names
                the split and the counts); more than one input split.
        """
        input_config = _parse(exec_properties[INPUT_CONFIG_KEY], example_gen_pb2.Input())
        output_config = _parse(exec_properties[OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
        if len(input_config.splits) != 1:
            raise ValueError(
                "Expected exactly one input split (the image folder); the train/eval split "
                f"comes from hashing. Received: {[s.name for s in input_config.splits]}"
            )
        pattern = input_config.splits[0].pattern
        folder = list_image_folder(spans.span_folder(exec_properties[INPUT_BASE_KEY], pattern))
        if not folder.images:
            raise ValueError(
                f"Expected image files ({', '.join(IMAGE_EXTENSIONS)}) in the class "
                f"folders under {folder.root!r}. Received: 0 image files, "
                f"{len(folder.skipped)} other entries."
            )
        empty_classes = [name for name, n in folder.class_counts().items() if n == 0]
        if empty_classes:
            logging.warning("ImageExampleGen: class folders with no images: %s", empty_classes)
        logging.info(
            "ImageExampleGen: %s: %d classes, %d image files, %d skipped non-image entries",
            folder.root,
            len(folder.label_map),
            len(folder.images),
            len(folder.skipped),
        )

        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        counts_dir = os.path.join(examples.uri, _COUNTS_DIR)
        self._folders = {pattern: folder}
        self._counts_path = os.path.join(counts_dir, _COUNTS_FILE)
        try:
            super().Do(input_dict, output_dict, exec_properties)
            with fileio.open(self._counts_path, "r") as f:
                split_counts = json.loads(f.read())
        finally:
            self._folders, self._counts_path = {}, None
            if fileio.exists(counts_dir):
                fileio.rmtree(counts_dir)

        split_names = utils.generate_output_split_names(input_config, output_config)
        report = IngestionReport(
            label_map=folder.label_map,
            split_counts={name: int(split_counts.get(name, 0)) for name in split_names},
            image_files=len(folder.images),
            skipped=len(folder.skipped),
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

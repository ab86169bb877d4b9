"""What one ingestion run found, as Examples-artifact custom properties.

Custom properties are ints and strings only: the KFP v2 container entrypoint cannot read bool
or proto properties. Property names live here so the executor, tests and downstream readers
share them.

>>> report = IngestionReport({"cat": 0}, {"train": 4, "eval": 1}, image_files=6, skipped=0)
>>> report.unreadable_images
1
"""

from __future__ import annotations

import dataclasses
import json

from backbone_regularizer.components.image_ingestion.images import label_map_to_json

LABEL_MAP_PROPERTY = "label_map"  # JSON string, class folder name -> label (the vocabulary)
NUM_CLASSES_PROPERTY = "num_classes"  # int
LABEL_SOURCE_PROPERTY = "label_source"  # str, where the vocabulary came from
LABELS_ADDED_PROPERTY = "labels_added"  # JSON list, names appended by grow_labels
SPANS_PROPERTY = "spans"  # JSON list of the spans ingested, oldest first
SPAN_COUNTS_PROPERTY = "span_counts"  # JSON, span -> split -> image files listed
CLASS_COUNTS_PROPERTY = "class_counts"  # JSON, class -> split -> image files listed
UNREADABLE_IMAGES_PROPERTY = "unreadable_images"  # int, image extension but Pillow cannot decode
SKIPPED_NON_IMAGE_FILES_PROPERTY = "skipped_non_image_files"  # int, entries that are not images
COUNT_PROPERTY_PREFIX = "count_"  # + split name: int, examples written to that split


def count_property(split_name: str) -> str:
    """Returns the custom property name for a split's example count, e.g. ``count_train``."""
    return f"{COUNT_PROPERTY_PREFIX}{split_name}"


@dataclasses.dataclass(frozen=True)
class IngestionReport:
    """Counts from one ingestion run of one span folder.

    Attributes:
        label_map: class folder name -> label (the pipeline's vocabulary).
        split_counts: split name -> number of examples written.
        image_files: image files selected for ingestion (readable or not).
        skipped: entries that are not image files in class folders.
        label_source: where the vocabulary came from.
        labels_added: names ``grow_labels`` appended to it.
        spans: the spans ingested, oldest first.
        class_counts: class -> split -> image files listed.
        span_counts: span -> split -> image files listed.
    """

    label_map: dict[str, int]
    split_counts: dict[str, int]
    image_files: int
    skipped: int
    label_source: str | None = None
    labels_added: tuple[str, ...] = ()
    spans: tuple[int, ...] | None = None
    class_counts: dict[str, dict[str, int]] | None = None
    span_counts: dict[int, dict[str, int]] | None = None

    @property
    def unreadable_images(self) -> int:
        """Image files that were not written: every readable image lands in exactly one split."""
        return self.image_files - sum(self.split_counts.values())

    def check(self) -> None:
        """Fails on an impossible count or an empty split.

        Raises:
            RuntimeError: more examples were written than image files were listed.
            ValueError: a split received no examples; the message names the split and counts.
        """
        if self.unreadable_images < 0:
            raise RuntimeError(
                f"Expected at most {self.image_files} examples (the image files listed). "
                f"Received: split counts {self.split_counts}. Was the folder changed mid-run?"
            )
        empty = [name for name, count in self.split_counts.items() if count == 0]
        if empty:
            counts = ", ".join(f"{count_property(n)}={c}" for n, c in self.split_counts.items())
            raise ValueError(
                f"Expected every split to receive at least one image; split(s) {empty} are "
                f"empty. Received: {counts}, image_files={self.image_files}, "
                f"unreadable_images={self.unreadable_images}, "
                f"skipped_non_image_files={self.skipped}. Add images or change "
                "`train_eval_ratio`."
            )

    def custom_properties(self) -> dict[str, int | str]:
        """Returns the Examples-artifact custom properties (ints and strings only)."""
        properties: dict[str, int | str] = {
            LABEL_MAP_PROPERTY: label_map_to_json(self.label_map),
            NUM_CLASSES_PROPERTY: len(self.label_map),
            UNREADABLE_IMAGES_PROPERTY: self.unreadable_images,
            SKIPPED_NON_IMAGE_FILES_PROPERTY: self.skipped,
        }
        for split_name, count in self.split_counts.items():
            properties[count_property(split_name)] = count
        if self.label_source is not None:
            properties[LABEL_SOURCE_PROPERTY] = self.label_source
            properties[LABELS_ADDED_PROPERTY] = _json(list(self.labels_added))
        if self.spans is not None:
            properties[SPANS_PROPERTY] = _json(list(self.spans))
        if self.span_counts is not None:
            properties[SPAN_COUNTS_PROPERTY] = _json(
                {str(k): v for k, v in self.span_counts.items()}
            )
        if self.class_counts is not None:
            properties[CLASS_COUNTS_PROPERTY] = _json(self.class_counts)
        return properties


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

"""What one ImageExampleGen run ingests: the label vocabulary, the window of spans, the holdout.

``plan_ingestion`` lists folders only (no image is read) and decides, before Beam starts:

* the **vocabulary**: ``labels`` from the config, else the class folders of the first span
  (the lowest span number up to the resolved one), grown only with ``grow_labels``
  (``labels.extend``). Every ingested folder is checked against it, so a class name it lacks
  fails the run naming the class and the folder;
* the **window**: the resolved span and the ``span_window - 1`` spans before it
  (``spans.select_window``); the newest span gives all its images (hash-split into train and
  eval), the older ones only the images the hash sends to train (``splits.keeps_for_training``);
* the **holdout**: an optional fixed folder of class folders, a split of its own;
* the **per-class counts** of image files per split, listed (an image that turns out
  unreadable is counted here and in ``unreadable_images``).

The options travel in the component's ``custom_config`` (``custom_config.py``: a
``google.protobuf.Struct`` in ExampleGen's ``CustomConfig``), so the compiled Kubeflow spec
holds them like any execution property and a changed option invalidates the cache.

>>> plan = plan_ingestion("/data", "span-3/*/*", IngestionOptions("span-{SPAN}", span_window=2))
>>> plan.spans, plan.label_map
((2, 3), {'digit_5': 0, 'digit_6': 1})
"""

from __future__ import annotations

import dataclasses

from absl import logging

from backbone_regularizer.components.image_ingestion import labels as vocabulary
from backbone_regularizer.components.image_ingestion import spans, splits
from backbone_regularizer.components.image_ingestion.images import (
    HOLDOUT_SPAN,
    ImageFolder,
    class_folder_names,
    list_image_folder,
)

CONFIG_SOURCE = "config `labels`"


@dataclasses.dataclass(frozen=True)
class IngestionOptions:
    """ImageExampleGen's settings beyond TFX's input/output configs.

    Attributes:
        span_pattern: the span folder pattern (``span-{SPAN}``), or None without spans.
        labels: the label vocabulary in index order, or None (the first span's folders).
        grow_labels: append class names the vocabulary lacks instead of failing.
        span_window: train on the last N spans (an int >= 1) or ``"all"``.
        holdout: a fixed folder of class folders ingested as the ``holdout`` split, or None.
    """

    span_pattern: str | None = None
    labels: tuple[str, ...] | None = None
    grow_labels: bool = False
    span_window: int | str = 1
    holdout: str | None = None

    def __post_init__(self):
        if self.labels is not None:
            object.__setattr__(self, "labels", vocabulary.check_labels(self.labels))
        spans.check_span_window(self.span_window)
        if self.span_window != 1 and self.span_pattern is None:
            raise ValueError(
                "Invalid config `span_window`. Expected 1 when there are no spans "
                f"(span_pattern is null). Received: span_window={self.span_window!r}"
            )
        if not isinstance(self.grow_labels, bool):
            raise ValueError(
                "Invalid config `grow_labels`. Expected true or false. "
                f"Received: grow_labels={self.grow_labels!r}"
            )
        if self.holdout is not None and (not isinstance(self.holdout, str) or not self.holdout):
            raise ValueError(
                "Invalid config `holdout`. Expected a folder path or URI, or null. "
                f"Received: holdout={self.holdout!r}"
            )

    def settings(self) -> dict:
        """The settings that differ from the defaults, for ``custom_config.make_custom_config``
        (so a pipeline with none keeps TFX's default: no ``custom_config``)."""
        default = IngestionOptions()
        return {
            field.name: list(value) if isinstance(value, tuple) else value
            for field in dataclasses.fields(self)
            if (value := getattr(self, field.name)) != getattr(default, field.name)
        }

    @classmethod
    def from_settings(cls, settings: dict) -> IngestionOptions:
        """The options among ``custom_config.read_custom_config``'s settings (others ignored)."""
        values = {f.name: settings[f.name] for f in dataclasses.fields(cls) if f.name in settings}
        window = values.get("span_window")
        if isinstance(window, float) and window.is_integer():
            values["span_window"] = int(window)  # a Struct stores numbers as doubles
        if values.get("labels") is not None:
            values["labels"] = tuple(values["labels"])
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class IngestionPlan:
    """What to ingest, decided from folder listings.

    Attributes:
        label_map: the vocabulary, class name -> index.
        label_source: where the vocabulary came from (``config `labels```, or the first span).
        labels_added: names appended by ``grow_labels`` (beyond the config or first span).
        spans: the spans ingested, oldest first (the resolved one last).
        hashed: the images to hash-split into train and eval, with ``label_map``.
        holdout: the holdout folder's images (``label_map`` set), or None.
        class_counts: class name -> split -> image files listed, every class of the
            vocabulary included (0 where a class has none).
        span_counts: span -> split -> image files listed.
        skipped: entries that are not images, in the ingested folders.
    """

    label_map: dict[str, int]
    label_source: str
    labels_added: tuple[str, ...]
    spans: tuple[int, ...]
    hashed: ImageFolder
    holdout: ImageFolder | None
    class_counts: dict[str, dict[str, int]]
    span_counts: dict[int, dict[str, int]]
    skipped: int

    @property
    def image_files(self) -> int:
        return len(self.hashed.images) + (len(self.holdout.images) if self.holdout else 0)

    @property
    def missing_classes(self) -> dict[str, list[str]]:
        """Split -> the classes of the vocabulary with no image in it."""
        split_names = sorted({s for counts in self.class_counts.values() for s in counts})
        return {
            split: [name for name, counts in self.class_counts.items() if not counts.get(split)]
            for split in split_names
        }


def _first_span_vocabulary(span: spans.SpanFolder, listed: dict[int, ImageFolder]):
    folder = listed.get(span.span)
    names = sorted(folder.label_map) if folder else class_folder_names(span.path)
    return vocabulary.from_names(names), f"class folders of the first span, {span.path}"


def plan_ingestion(
    input_base: str,
    resolved_pattern: str,
    options: IngestionOptions,
    train_eval_ratio: tuple[int, int] = splits.DEFAULT_TRAIN_EVAL_RATIO,
) -> IngestionPlan:
    """Decides what one run ingests (see the module docstring).

    Args:
        input_base: the component's ``input_base``.
        resolved_pattern: the split pattern after TFX's driver resolved the span.
        options: the component's ``IngestionOptions``.
        train_eval_ratio: the hash buckets, to keep only the train files of older spans.

    Returns:
        An ``IngestionPlan``.

    Raises:
        ValueError: a folder without class folders; a class name the vocabulary lacks (not
            with ``grow_labels``, except in the holdout); the resolved span not listed.
    """
    newest_path = spans.span_folder(input_base, resolved_pattern)
    if options.span_pattern is None:
        history = [spans.SpanFolder(0, newest_path)]
        window = history
    else:
        every = spans.list_span_folders(input_base, options.span_pattern)
        window = spans.select_window(every, newest_path, options.span_window)
        history = [f for f in every if f.span <= window[-1].span]
    listed = {f.span: list_image_folder(f.path, f.span) for f in window}

    if options.labels is not None:
        label_map, source = vocabulary.from_names(options.labels), CONFIG_SOURCE
    else:
        label_map, source = _first_span_vocabulary(history[0], listed)
    initial = set(label_map)
    if options.grow_labels:  # every span so far, in order: indices never depend on the window
        for folder in history:
            found = listed[folder.span].label_map if folder.span in listed else None
            names = found if found is not None else class_folder_names(folder.path)
            label_map = vocabulary.extend(label_map, names, folder.path, grow=True)
    else:
        for folder in window:
            vocabulary.extend(label_map, listed[folder.span].label_map, folder.path, False, source)
    holdout = None
    if options.holdout is not None:
        holdout = list_image_folder(options.holdout, HOLDOUT_SPAN)
        vocabulary.extend(
            label_map, holdout.label_map, f"the holdout {holdout.root}", False, source
        )

    newest = window[-1].span
    split_names = (*splits.SPLIT_NAMES, *([splits.HOLDOUT_SPLIT] if holdout else []))
    class_counts = {name: dict.fromkeys(split_names, 0) for name in label_map}
    span_counts: dict[int, dict[str, int]] = {}
    images = []
    for folder in window:
        for image in listed[folder.span].images:
            if folder.span == newest:
                split = splits.assign_split(image.filename, train_eval_ratio)
            elif splits.keeps_for_training(image.filename, train_eval_ratio):
                split = splits.TRAIN_SPLIT
            else:
                continue
            images.append(image)
            _count(class_counts, image.label_name, split)
            _count(span_counts, folder.span, split)
    for image in holdout.images if holdout else ():
        _count(class_counts, image.label_name, splits.HOLDOUT_SPLIT)
    skipped = sum(len(f.skipped) for f in listed.values()) + (
        len(holdout.skipped) if holdout else 0
    )
    hashed = ImageFolder(
        root=window[-1].path.rstrip("/"),
        label_map=label_map,
        images=tuple(images),
        skipped=(),
    )
    if holdout is not None:
        holdout = dataclasses.replace(holdout, label_map=label_map)
    plan = IngestionPlan(
        label_map=label_map,
        label_source=source,
        labels_added=tuple(name for name in label_map if name not in initial),
        spans=tuple(f.span for f in window),
        hashed=hashed,
        holdout=holdout,
        class_counts=class_counts,
        span_counts=span_counts,
        skipped=skipped,
    )
    missing = plan.missing_classes.get(splits.TRAIN_SPLIT)
    if missing:
        logging.warning(
            "ImageExampleGen: no training image of %s in spans %s: a model trained on this "
            "data cannot predict them.",
            missing,
            list(plan.spans),
        )
    return plan


def _count(counts: dict, key, split: str) -> None:
    counts.setdefault(key, {})
    counts[key][split] = counts[key].get(split, 0) + 1

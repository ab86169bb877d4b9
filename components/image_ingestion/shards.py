"""TFRecord shards per split: how many, and which images go in each, the same on every run.

Each split is written as ``<split dir>/data_tfrecord-<i>-of-<n>.gz`` (TFX's own file names),
so readers glob all shards (StatisticsGen, TFMA and the Trainer read ``Split-<name>/*``).

How many shards a split gets, for ``n`` images and ``w`` Beam workers::

    shards = min(n, shards_per_split)                                  # when configured
    shards = clamp(max(ceil(n / 1000), min(w, ceil(n / 100))), 1, 1024)  # otherwise

so about one shard per thousand images (27 MB of 224x224 JPEGs, ~100 MB of ImageNet-sized
photos), at least one per Beam worker while a shard keeps ~100 images, never an empty shard.
Which images: the split's images sorted by ``filename``, dealt round-robin (image ``k`` goes to
shard ``k % shards``), each shard in sorted order. Every shard then holds the same mix of
classes, and identical inputs give byte-identical files. With one shard the file holds the
split in ``filename`` order.

>>> [len(s.images) for s in plan_shards({"train": images}, shards_per_split=4)]
[250, 250, 250, 250]
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence

from backbone_regularizer.components.image_ingestion.images import ImageFile

# TFX's write_split.DEFAULT_TF_RECORD_FILE_NAME and suffix: what every TFX reader expects.
SHARD_FILE_PREFIX = "data_tfrecord"
SHARD_FILE_SUFFIX = ".gz"
IMAGES_PER_SHARD = 1000
# Extra shards for Beam workers stop here: smaller shards cost more in file opens than they save.
MIN_IMAGES_PER_SHARD = 100
MAX_SHARDS = 1024


def check_shards_per_split(value: object, name: str = "shards_per_split") -> int | None:
    """Checks a configured shard count: ``None`` (derive it) or an int in ``[1, MAX_SHARDS]``.

    Returns:
        The value, unchanged.

    Raises:
        ValueError: anything else (bools included).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SHARDS:
        raise ValueError(
            f"Expected `{name}` to be None (derived from the number of images) or an int in "
            f"[1, {MAX_SHARDS}]. Received: {name}={value!r}"
        )
    return value


def shard_count(num_images: int, shards_per_split: int | None = None, workers: int = 1) -> int:
    """Returns the number of shards of a split of ``num_images`` (rule in the module docstring).

    Args:
        num_images: images listed for the split (0 gives 0 shards: nothing to write).
        shards_per_split: the configured count, or ``None`` to derive it.
        workers: Beam workers that write in parallel (``beam_worker_count``).
    """
    check_shards_per_split(shards_per_split)
    if num_images <= 0:
        return 0
    if shards_per_split is not None:
        return min(num_images, shards_per_split)
    by_size = math.ceil(num_images / IMAGES_PER_SHARD)
    by_workers = min(max(workers, 1), math.ceil(num_images / MIN_IMAGES_PER_SHARD))
    return min(max(by_size, by_workers, 1), MAX_SHARDS)


def shard_file_name(index: int, count: int) -> str:
    """``data_tfrecord-00002-of-00008.gz``: the name TFX's own ExampleGen gives shard 2 of 8."""
    return f"{SHARD_FILE_PREFIX}-{index:05d}-of-{count:05d}{SHARD_FILE_SUFFIX}"


@dataclasses.dataclass(frozen=True)
class Shard:
    """One output file: which split, its place among the split's shards, and its images.

    Attributes:
        split: the split name, e.g. ``"train"``.
        index: 0-based position among the split's ``count`` shards.
        count: number of shards of the split.
        images: the images written to this file, in this order.
    """

    split: str
    index: int
    count: int
    images: tuple[ImageFile, ...]

    @property
    def file_name(self) -> str:
        return shard_file_name(self.index, self.count)

    def to_json(self) -> dict:
        return {
            "split": self.split,
            "index": self.index,
            "count": self.count,
            "images": [[i.path, i.filename, i.label_name] for i in self.images],
        }

    @classmethod
    def from_json(cls, data: dict) -> Shard:
        images = tuple(ImageFile(*entry) for entry in data["images"])
        return cls(data["split"], data["index"], data["count"], images)


def plan_shards(
    images_by_split: Mapping[str, Sequence[ImageFile]],
    shards_per_split: int | None = None,
    workers: int = 1,
) -> list[Shard]:
    """Deals each split's images into its shards (rule in the module docstring).

    Args:
        images_by_split: split name -> the images assigned to it, in any order.
        shards_per_split: the configured count, or ``None`` to derive it per split.
        workers: Beam workers that write in parallel.

    Returns:
        The shards of every split, split by split in the mapping's order, then by index. A
        split without images has no shard.
    """
    planned = []
    for split, split_images in images_by_split.items():
        ordered = sorted(split_images, key=lambda image: image.filename)
        count = shard_count(len(ordered), shards_per_split, workers)
        planned += [Shard(split, i, count, tuple(ordered[i::count])) for i in range(count)]
    return planned


def beam_worker_count(beam_args: Sequence[str]) -> int:
    """The number of Beam workers ``beam_args`` ask for (1 when they say nothing).

    The largest of ``--direct_num_workers`` (0 means one per core, as the DirectRunner reads
    it), ``--num_workers``/``--max_num_workers`` (Dataflow) and ``--parallelism`` (Flink).
    """
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        FlinkRunnerOptions,
        PipelineOptions,
        WorkerOptions,
    )

    options = PipelineOptions(list(beam_args))
    direct = options.view_as(DirectOptions).direct_num_workers
    worker_options = options.view_as(WorkerOptions)
    counts = [
        (os.cpu_count() or 1) if direct == 0 else direct,
        worker_options.num_workers,
        worker_options.max_num_workers,
        options.view_as(FlinkRunnerOptions).parallelism,
    ]
    return max([1, *(c for c in counts if isinstance(c, int) and c > 0)])

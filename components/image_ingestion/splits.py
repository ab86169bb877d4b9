"""Deterministic train/eval split by file name, through ExampleGen's own hash partitioning.

ImageExampleGen hands TFX an ``output_config`` with ``hash_buckets`` and
``partition_feature_name="filename"``; TFX's ExampleGen then sends each example to

    bucket = int(sha256(serialized filename feature)) % (train + eval)
    split  = "train" if bucket < train else "eval"

``filename`` is relative to the span folder, so an image keeps its split in every span and the
eval set never leaks into training when spans overlap. ``assign_split`` reproduces the rule so
callers can predict a file's split without running the pipeline.

With a window of spans, the eval split stays the newest span's: the older spans contribute
only the files this rule sends to ``train`` (``keeps_for_training``). An optional fixed holdout
folder becomes a third split, ``holdout``, outside the hashing: the same images in every run,
for comparisons across time.

>>> assign_split("cat/0001.png", (4, 1)) in {"train", "eval"}
True
"""

from __future__ import annotations

import bisect
import hashlib

import tensorflow as tf
from tfx.proto import example_gen_pb2

from backbone_regularizer.components.image_ingestion.images import FILENAME_KEY

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
SPLIT_NAMES = (TRAIN_SPLIT, EVAL_SPLIT)
HOLDOUT_SPLIT = "holdout"
DEFAULT_TRAIN_EVAL_RATIO = (4, 1)


def validate_train_eval_ratio(train_eval_ratio: tuple[int, int]) -> tuple[int, int]:
    """Checks a ``(train, eval)`` ratio of hash buckets.

    Args:
        train_eval_ratio: two positive ints, e.g. ``(4, 1)`` for 80% train / 20% eval.

    Returns:
        The ratio as a tuple of two ints.

    Raises:
        ValueError: not a pair of positive ints (bools are rejected).
    """
    if (
        not isinstance(train_eval_ratio, tuple | list)
        or len(train_eval_ratio) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in train_eval_ratio)
    ):
        raise ValueError(
            "Expected `train_eval_ratio` to be a pair of positive ints such as (4, 1). "
            f"Received: train_eval_ratio={train_eval_ratio!r}"
        )
    return int(train_eval_ratio[0]), int(train_eval_ratio[1])


def make_output_config(
    train_eval_ratio: tuple[int, int] = DEFAULT_TRAIN_EVAL_RATIO,
) -> example_gen_pb2.Output:
    """Builds the ExampleGen output config: ``train``/``eval`` hash buckets keyed on filename.

    Args:
        train_eval_ratio: hash buckets for ``train`` and ``eval``.

    Returns:
        An ``example_gen_pb2.Output`` for ``FileBasedExampleGen``.

    Raises:
        ValueError: see ``validate_train_eval_ratio``.
    """
    train, eval_ = validate_train_eval_ratio(train_eval_ratio)
    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name=TRAIN_SPLIT, hash_buckets=train),
                example_gen_pb2.SplitConfig.Split(name=EVAL_SPLIT, hash_buckets=eval_),
            ],
            partition_feature_name=FILENAME_KEY,
        )
    )


def assign_split(
    filename: str, train_eval_ratio: tuple[int, int] = DEFAULT_TRAIN_EVAL_RATIO
) -> str:
    """Returns the split ExampleGen gives an image, by the rule in the module docstring.

    Args:
        filename: path relative to the span folder, e.g. ``"cat/0001.png"``.
        train_eval_ratio: hash buckets for ``train`` and ``eval``.

    Returns:
        ``"train"`` or ``"eval"``.

    Raises:
        ValueError: see ``validate_train_eval_ratio``.
    """
    train, eval_ = validate_train_eval_ratio(train_eval_ratio)
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[filename.encode("utf-8")]))
    key = feature.SerializeToString(deterministic=True)
    bucket = int(hashlib.sha256(key).hexdigest(), 16) % (train + eval_)
    return SPLIT_NAMES[bisect.bisect([train, train + eval_], bucket)]


def keeps_for_training(
    filename: str, train_eval_ratio: tuple[int, int] = DEFAULT_TRAIN_EVAL_RATIO
) -> bool:
    """Whether an image of an older span in the window is ingested: only its ``train`` files are.

    The hash partition then sends it to ``train`` too, so the eval split holds the newest span
    only, and a file name that is in the newest span's eval split never trains.
    """
    return assign_split(filename, train_eval_ratio) == TRAIN_SPLIT

"""A bounded, stratified sample of a split's records, drawn in one streaming pass.

Each class keeps at most ``quota = max_examples // num_classes`` records: the ones with the
smallest keyed hash of their image's bytes (SipHash, keyed by the seed). That is a uniform sample
without replacement within each class (bottom-k sampling), the same whatever the number or
order of the shards, and it never holds more than ``quota`` records per class plus one batch
of the stream. The pass also counts every class, so estimates on the sample can be weighted
back to the split (``Sample.weights``).

>>> sample = stratified_sample(files, num_classes=5, max_examples=2000, seed=0)
>>> sample.labels, sample.split_counts, sample.weights()
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from backbone_regularizer.pipeline.trainer.data import FEATURES, IMAGE_KEY, LABEL_KEY, read_records

READ_BATCH = 512
_BUCKETS = 2**62


@dataclasses.dataclass(frozen=True)
class Sample:
    """The sampled encoded records, in the split's reading order, and its class counts."""

    records: np.ndarray  # object array of serialized tf.Examples
    labels: np.ndarray  # int64
    split_counts: np.ndarray  # int64 [num_classes]: every record of the split, by class

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def split_size(self) -> int:
        return int(self.split_counts.sum())

    def weights(self) -> np.ndarray | None:
        """Per-example weights ``N_c / n_c`` (class count in the split over in the sample),
        normalized to mean 1: weighted means over the sample estimate means over the split.
        None when the sample is the whole split (every weight would be 1)."""
        sampled = np.bincount(self.labels, minlength=len(self.split_counts))
        if np.array_equal(sampled, self.split_counts):
            return None
        weights = self.split_counts[self.labels] / sampled[self.labels]
        return weights / weights.mean()


def quota(max_examples: int, num_classes: int) -> int:
    """Records kept per class: ``max_examples // num_classes``.

    Raises:
        ValueError: ``max_examples < num_classes`` (a class would get no example).
    """
    if max_examples < num_classes:
        raise ValueError(
            f"Expected at least one example per class: max_examples >= num_classes "
            f"({num_classes}). Received: max_examples={max_examples}"
        )
    return max_examples // num_classes


def stratified_sample(
    files: list[str], num_classes: int, max_examples: int, seed: int = 0
) -> Sample:
    """Up to ``max_examples // num_classes`` records per class of GZIP TFRecord ``files``.

    Raises:
        ValueError: a label outside ``0..num_classes-1``; ``max_examples < num_classes``.
    """
    per_class = quota(max_examples, num_classes)

    def keyed(records):
        parsed = tf.io.parse_example(records, FEATURES)
        # The image's bytes, not the record's: a tf.Example's serialization is not canonical.
        hashes = tf.strings.to_hash_bucket_strong(parsed[IMAGE_KEY], _BUCKETS, [seed, 0x5EED])
        return records, parsed[LABEL_KEY], hashes

    stream = read_records(files).batch(READ_BATCH).map(keyed, num_parallel_calls=tf.data.AUTOTUNE)
    kept_records = np.empty(0, dtype=object)
    kept_labels = np.empty(0, dtype=np.int64)
    kept_hashes = np.empty(0, dtype=np.int64)
    kept_positions = np.empty(0, dtype=np.int64)
    counts = np.zeros(num_classes, dtype=np.int64)
    seen = 0
    for records, labels, hashes in stream.prefetch(2).as_numpy_iterator():
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if len(bad):
            raise ValueError(
                f"Expected labels in 0..{num_classes - 1} (num_classes={num_classes}). "
                f"Received: label={int(bad[0])}"
            )
        counts += np.bincount(labels, minlength=num_classes)
        positions = np.concatenate([kept_positions, seen + np.arange(len(labels))])
        seen += len(labels)
        records = np.concatenate([kept_records, records.astype(object)])
        labels = np.concatenate([kept_labels, labels])
        hashes = np.concatenate([kept_hashes, hashes])
        order = np.lexsort((hashes, labels))  # by label, then hash
        ranked = labels[order]
        rank = np.arange(len(order)) - np.searchsorted(ranked, ranked, side="left")
        keep = np.sort(order[rank < per_class])  # back in stream order
        kept_records, kept_labels = records[keep], labels[keep]
        kept_hashes, kept_positions = hashes[keep], positions[keep]
    return Sample(kept_records, kept_labels, counts)

"""The bounded stratified sample behind the baselines: sizes, classes, weights, memory bound."""

import numpy as np
import pytest

from backbone_regularizer.pipeline.trainer import sample as sampling
from tests.trainer.tfrecords import example_index, write_shards

# 50, 30 and 5 examples of classes 0, 1, 2, classes interleaved.
LABELS = [0, 1] * 30 + [0] * 20 + [2] * 5


def indices(sample) -> list[int]:
    return [example_index(record) for record in sample.records]


def test_sizes_every_class_and_the_split_counts(tmp_path):
    files = write_shards(tmp_path / "split", LABELS, shards=3)
    sample = sampling.stratified_sample(files, num_classes=3, max_examples=30, seed=0)
    assert np.bincount(sample.labels).tolist() == [10, 10, 5]  # 30 // 3 per class
    assert sample.split_counts.tolist() == [50, 30, 5] and sample.split_size == 85
    assert sample.size == len(sample.records) == 25
    # Weights N_c / n_c (5, 3, 1) normalized to mean 1: weighted sums estimate the split's.
    weights = sample.weights()
    per_class = {int(c): weights[sample.labels == c][0] for c in range(3)}
    assert per_class[0] / per_class[2] == pytest.approx(5) and weights.mean() == pytest.approx(1)
    assert per_class[1] / per_class[2] == pytest.approx(3)


def test_a_split_smaller_than_the_cap_is_taken_whole_in_reading_order(tmp_path):
    files = write_shards(tmp_path / "split", LABELS, shards=1)
    sample = sampling.stratified_sample(files, num_classes=3, max_examples=300)
    assert indices(sample) == list(range(len(LABELS)))
    assert sample.weights() is None


def test_the_same_sample_whatever_the_shards_and_another_for_another_seed(tmp_path):
    one = write_shards(tmp_path / "one", LABELS, shards=1)
    five = write_shards(tmp_path / "five", LABELS, shards=5)
    draw = dict(num_classes=3, max_examples=12)
    first = set(indices(sampling.stratified_sample(one, seed=1, **draw)))
    assert first == set(indices(sampling.stratified_sample(five, seed=1, **draw)))
    assert first != set(indices(sampling.stratified_sample(one, seed=2, **draw)))
    # Not the first records read: class 0's 4 are not its first 4 (records 0, 2, 4, 6).
    class_0 = {i for i in first if LABELS[i] == 0}
    assert len(class_0) == 4 and class_0 != {0, 2, 4, 6}


def test_the_sampler_never_holds_more_than_the_cap_plus_one_batch(tmp_path, monkeypatch):
    files = write_shards(tmp_path / "split", LABELS * 4, shards=2)  # 340 records
    monkeypatch.setattr(sampling, "READ_BATCH", 16)
    held = []
    lexsort = np.lexsort

    def spy(keys):
        held.append(len(keys[0]))
        return lexsort(keys)

    monkeypatch.setattr(sampling.np, "lexsort", spy)
    sample = sampling.stratified_sample(files, num_classes=3, max_examples=30)
    assert sample.size == 30 and len(held) == 340 // 16 + 1
    assert max(held) <= 30 + 16  # what was kept + the batch being read, never the split


def test_labels_outside_the_classes_and_a_cap_below_them_are_errors(tmp_path):
    files = write_shards(tmp_path / "split", LABELS, shards=1)
    with pytest.raises(ValueError, match=r"Expected labels in 0..1 \(num_classes=2\)"):
        sampling.stratified_sample(files, num_classes=2, max_examples=10)
    with pytest.raises(ValueError, match=r"max_examples >= num_classes \(3\)"):
        sampling.stratified_sample(files, num_classes=3, max_examples=2)

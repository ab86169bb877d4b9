"""The Trainer's input pipeline: streams (no decoded cache unless asked), shuffles encoded
records, reads shards in parallel, and is deterministic given the seed."""

import numpy as np
import pytest
import tensorflow as tf

from backbone_regularizer.pipeline.trainer import data
from backbone_regularizer.pipeline.trainer.module import data_cache_dir
from tests.trainer.tfrecords import record_index, write_shards

RAW = {"scale": 1.0, "offset": 0.0}  # pixels as decoded: the index pixel survives


def dataset(files, **kwargs):
    settings = dict(image_size=(8, 8), preprocessing_module=RAW, batch_size=4, training=True)
    return data.make_dataset(files, **{**settings, **kwargs})


def ops(ds: tf.data.Dataset) -> list[str]:
    """The dataset ops of ``ds``'s graph, sources first (the graph is stored in that order)."""
    graph = tf.compat.v1.GraphDef.FromString(ds._as_serialized_graph().numpy())
    return [node.op for node in graph.node if "Dataset" in node.op]


def indices(ds) -> list[int]:
    return [record_index(image) for images, _ in ds for image in images]


@pytest.fixture
def shards(tmp_path):
    return write_shards(tmp_path / "train", labels=[i % 3 for i in range(24)], shards=4)


def test_no_decoded_cache_by_default_and_shuffle_before_decode(shards):
    chain = ops(dataset(shards))
    assert not any("Cache" in op for op in chain)
    shuffles = [i for i, op in enumerate(chain) if op.startswith("ShuffleDataset")]
    decode = chain.index("ParallelMapDatasetV2")
    assert shuffles and max(shuffles) < decode  # records (and shards) shuffled, then decoded
    assert chain.index("ParallelInterleaveDatasetV4") < decode
    assert any("Cache" in op for op in ops(dataset(shards, cache="memory")))


def test_shards_are_interleaved_and_every_record_read_once(shards):
    # Record i is in shard i % 4: reading shards in parallel, one record each, in turn.
    assert indices(dataset(shards, training=False)) == list(range(24))
    epoch = indices(dataset(shards))
    assert sorted(epoch) == list(range(24)) and epoch != list(range(24))


def test_same_seed_same_batches_and_each_epoch_reshuffled(shards):
    first = dataset(shards, seed=3, augment=True)
    second = dataset(shards, seed=3, augment=True)
    epochs = [[x.numpy() for x, _ in first] for _ in range(2)]
    for epoch in epochs:
        assert all(np.array_equal(a, b.numpy()) for a, (b, _) in zip(epoch, second, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(*epochs, strict=True))
    assert indices(dataset(shards, seed=3)) != indices(dataset(shards, seed=4))


def test_augmentation_shifts_each_image_on_its_own(tmp_path):
    files = write_shards(tmp_path / "one", labels=[1] * 16, shards=1)
    plain = np.concatenate([x.numpy() for x, _ in dataset(files, training=False, batch_size=16)])
    shifted = np.concatenate([x.numpy() for x, _ in dataset(files, augment=True, batch_size=16)])
    assert shifted.shape == plain.shape == (16, 8, 8, 3)
    # Labelled-1 images are uniform (40) below the first row; a shift brings in black rows or
    # columns, at a different place per image, and brightness moves each image by < 0.1.
    black = [(image < 1).all(axis=-1).sum() for image in shifted]
    assert len(set(black)) > 1 and max(black) > 0
    assert np.abs(np.median(shifted, axis=(1, 2, 3)) - 40).max() <= 0.1


def test_memory_cache_states_its_size_and_refuses_what_cannot_fit(shards, monkeypatch):
    logged = []
    # absl's handler may not reach pytest's caplog once TFX has set logging up: record calls.
    monkeypatch.setattr(data.logging, "info", lambda message, *args: logged.append(message % args))
    dataset(shards, cache="memory")
    # 24 images of 8 x 8 x 3 float32 = 18,432 bytes.
    assert logged[0].startswith(
        "cache='memory': 24 decoded 8x8x3 float32 images, 0.00 GB in memory"
    )
    monkeypatch.setattr(data, "memory_limit", lambda: 10_000)
    with pytest.raises(ValueError, match=r"Received: 24 images of 8x8 = 0.0 GB; use cache="):
        dataset(shards, cache="memory")
    with pytest.raises(ValueError, match=r"Expected one of \['none', 'memory', 'disk'\]"):
        dataset(shards, cache="ram")
    with pytest.raises(ValueError, match=r"Received: cache_dir=None"):
        dataset(shards, cache="disk")


def test_cached_pipelines_give_the_same_examples(shards, tmp_path):
    expected = sorted(indices(dataset(shards)))
    assert sorted(indices(dataset(shards, cache="memory"))) == expected
    with data_cache_dir("disk", str(tmp_path / "run")) as folder:
        assert folder == str(tmp_path / "run" / "data-cache")
        cached = dataset(shards, cache="disk", cache_dir=folder)
        assert sorted(indices(cached)) == expected
        assert sorted(indices(cached)) == expected  # second epoch read from the cache files
        assert any(name.startswith("train") for name in tf.io.gfile.listdir(folder))
    assert not tf.io.gfile.exists(str(tmp_path / "run" / "data-cache"))


def test_a_retried_run_starts_from_an_empty_disk_cache(tmp_path):
    leftover = tmp_path / "run" / "data-cache"
    leftover.mkdir(parents=True)
    (leftover / "train_0.lockfile").write_text("from a failed attempt")
    with data_cache_dir("disk", str(tmp_path / "run")) as folder:
        assert tf.io.gfile.listdir(folder) == []
    with data_cache_dir("none", str(tmp_path / "run")) as folder:
        assert folder is None


def test_no_files_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="Expected TFRecord files. Received: no match for"):
        dataset(str(tmp_path / "nothing-*"))

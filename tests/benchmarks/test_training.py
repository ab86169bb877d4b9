"""The Trainer's throughput benchmarks on tiny inputs: every number is measured and filled."""

import keras
import tensorflow as tf

from benchmarks import training as bench


def test_generated_jpeg_shards(tmp_path):
    files = bench.write_jpeg_shards(tmp_path, count=10, shards=3, size=32)
    assert len(files) == 3
    counts = [sum(1 for _ in tf.data.TFRecordDataset(f, compression_type="GZIP")) for f in files]
    assert counts == [4, 3, 3]
    images, labels = next(iter(bench.bare_dataset(files, 32, batch=10)))
    assert images.shape == (10, 32, 32, 3) and set(labels.numpy()) <= set(range(5))


def tiny() -> keras.Model:
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=2)(inputs)
    return keras.Model(inputs, keras.layers.BatchNormalization()(x), name="tiny")


def test_input_and_training_throughput_rows(tmp_path):
    files = bench.write_jpeg_shards(tmp_path, count=16, shards=2, size=32)
    inputs = bench.input_throughput(files, size=32, batch=4, repeats=1)
    assert inputs["images"] == 16 and inputs["shards"] == 2 and inputs["cores"] >= 1
    floor = inputs["floor_images_per_cpu_s"]
    assert inputs["ratio"] == inputs["trainer_images_per_cpu_s"] / floor > 0
    assert inputs["wall_ratio"] == inputs["trainer_images_per_s"] / inputs["floor_images_per_s"]
    assert inputs["ratio_no_augment"] > 0 and inputs["wall_ratio_no_augment"] > 0
    assert {name: len(passes) for name, passes in inputs["passes"].items()} == {
        "floor": 1,
        "trainer": 1,
        "trainer_no_augment": 1,
    }
    fit = bench.training_throughput(files, size=32, batch=4, repeats=1, backbone=tiny)
    assert fit["images"] == 16 and fit["model"] == "tiny 32x32, batch 4"
    assert fit["ratio"] == fit["trainer_images_per_cpu_s"] / fit["bare_images_per_cpu_s"] > 0
    assert fit["wall_ratio"] == fit["trainer_images_per_s"] / fit["bare_images_per_s"] > 0

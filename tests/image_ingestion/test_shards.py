"""Shard planning and ImageExampleGen's custom_config, without Beam or TFX runs."""

import os

import pytest
from google.protobuf import wrappers_pb2
from tfx.proto import example_gen_pb2
from tfx.utils import proto_utils

from backbone_regularizer.components.image_ingestion import custom_config, shards
from backbone_regularizer.components.image_ingestion.images import ImageFile


def image_files(label_counts: dict[str, int]) -> list[ImageFile]:
    return [
        ImageFile(f"/data/{label}/{i:04d}.jpg", f"{label}/{i:04d}.jpg", label)
        for label, count in label_counts.items()
        for i in range(count)
    ]


@pytest.mark.parametrize(
    "num_images, configured, workers, expected",
    [
        (0, None, 1, 0),  # nothing to write
        (1, None, 1, 1),
        (300, None, 1, 1),  # the demo's splits: one file, as TFX wrote it before
        (1000, None, 1, 1),
        (1001, None, 1, 2),  # ~ one shard per thousand images
        (6400, None, 1, 7),
        (150, None, 2, 2),  # one per Beam worker while shards keep >= ~100 images
        (150, None, 8, 2),
        (5000, None, 8, 8),
        (2_000_000, None, 1, 1024),  # capped
        (10, 4, 1, 4),  # configured
        (3, 8, 1, 3),  # never an empty shard
        (5000, 2, 8, 2),  # configured wins over workers
    ],
)
def test_shard_count_rule(num_images, configured, workers, expected):
    assert shards.shard_count(num_images, configured, workers) == expected


@pytest.mark.parametrize("value", [0, -1, 1025, True, 2.0, "4"])
def test_invalid_shards_per_split_is_refused_with_the_value(value):
    with pytest.raises(ValueError, match="^Expected `shards_per_split` to be None") as error:
        shards.check_shards_per_split(value)
    assert f"Received: shards_per_split={value!r}" in str(error.value)


def test_plan_deals_sorted_images_round_robin_into_every_shard():
    images = image_files({"dog": 5, "cat": 7})
    plan = shards.plan_shards({"train": images[::-1], "eval": []}, shards_per_split=3)

    assert [(s.split, s.index, s.count) for s in plan] == [("train", i, 3) for i in range(3)]
    ordered = sorted(images, key=lambda image: image.filename)
    for shard in plan:
        assert list(shard.images) == ordered[shard.index :: 3]
        assert {image.label_name for image in shard.images} == {"cat", "dog"}  # mixed classes
    assert sorted(i.filename for s in plan for i in s.images) == [i.filename for i in ordered]
    assert [s.file_name for s in plan] == [
        "data_tfrecord-00000-of-00003.gz",
        "data_tfrecord-00001-of-00003.gz",
        "data_tfrecord-00002-of-00003.gz",
    ]


def test_plan_does_not_depend_on_listing_order():
    images = image_files({"a": 40, "b": 30, "c": 50})
    forward = shards.plan_shards({"train": images}, workers=2)
    backward = shards.plan_shards({"train": images[::-1]}, workers=2)
    assert forward == backward and len(forward) == 2


def test_one_shard_keeps_the_split_in_filename_order():
    images = image_files({"b": 3, "a": 2})
    [shard] = shards.plan_shards({"eval": images})
    assert [i.filename for i in shard.images] == sorted(i.filename for i in images)


def test_shard_round_trips_through_json():
    shard = shards.plan_shards({"train": image_files({"cat": 3})}, shards_per_split=2)[1]
    assert shards.Shard.from_json(shard.to_json()) == shard


@pytest.mark.parametrize(
    "beam_args, expected",
    [
        ([], 1),
        (["--direct_running_mode=in_memory", "--direct_num_workers=1"], 1),
        (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], 2),
        (["--direct_num_workers=0"], os.cpu_count()),  # the DirectRunner's "one per core"
        (["--runner=DataflowRunner", "--num_workers=5", "--max_num_workers=20"], 20),
        (["--runner=FlinkRunner", "--parallelism=4"], 4),
        (["--beam_plugins=tensorflow_io"], 1),
    ],
)
def test_beam_worker_count_reads_every_runner_option(beam_args, expected):
    assert shards.beam_worker_count(beam_args) == expected


def test_custom_config_round_trips_as_json_with_ints():
    config = custom_config.make_custom_config({custom_config.SHARDS_PER_SPLIT_KEY: 8})
    text = proto_utils.proto_to_json(config)
    assert "type.googleapis.com/google.protobuf.Struct" in text
    assert custom_config.read_custom_config(text) == {"shards_per_split": 8}


def test_no_setting_means_no_custom_config():
    assert custom_config.make_custom_config({custom_config.SHARDS_PER_SPLIT_KEY: None}) is None
    assert custom_config.read_custom_config(None) == {}
    empty = proto_utils.proto_to_json(example_gen_pb2.CustomConfig())
    assert custom_config.read_custom_config(empty) == {}


def test_custom_config_of_another_type_is_refused():
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(wrappers_pb2.Int32Value(value=3))
    with pytest.raises(ValueError, match="to hold a google.protobuf.Struct") as error:
        custom_config.read_custom_config(proto_utils.proto_to_json(config))
    assert "Received: custom_config=" in str(error.value)

"""ImageExampleGen construction: configs, types, and build-time argument errors."""

import json

import pytest
from tfx.components.example_gen import driver
from tfx.proto import range_config_pb2
from tfx.types import standard_artifacts

from backbone_regularizer.components.image_ingestion import ImageExampleGen
from backbone_regularizer.components.image_ingestion.custom_config import read_custom_config
from backbone_regularizer.components.image_ingestion.executor import Executor


def test_construction_builds_span_input_and_hash_output_configs():
    gen = ImageExampleGen(input_base="gs://bucket/pets", span_pattern="span-{SPAN}")
    assert gen.outputs["examples"].type == standard_artifacts.Examples
    assert gen.exec_properties["input_base"] == "gs://bucket/pets"
    input_config = json.loads(gen.exec_properties["input_config"])
    assert input_config == {"splits": [{"name": "single_split", "pattern": "span-{SPAN}/*/*"}]}
    output_config = json.loads(gen.exec_properties["output_config"])
    assert output_config["split_config"]["partition_feature_name"] == "filename"
    assert output_config["split_config"]["splits"] == [
        {"name": "train", "hash_buckets": 4},
        {"name": "eval", "hash_buckets": 1},
    ]
    assert gen.exec_properties["range_config"] is None
    assert gen.exec_properties["custom_config"] is None  # shards derived from the data
    assert gen.executor_spec.executor_class is Executor
    assert gen.driver_class is driver.FileBasedDriver


def test_construction_without_spans_and_with_custom_ratio():
    gen = ImageExampleGen(input_base="/data/pets", train_eval_ratio=(3, 2))
    input_config = json.loads(gen.exec_properties["input_config"])
    assert input_config["splits"][0]["pattern"] == "*/*"
    buckets = json.loads(gen.exec_properties["output_config"])["split_config"]["splits"]
    assert [b["hash_buckets"] for b in buckets] == [3, 2]


def test_shards_per_split_travels_in_custom_config():
    gen = ImageExampleGen(input_base="/data/pets", shards_per_split=16)
    assert read_custom_config(gen.exec_properties["custom_config"]) == {"shards_per_split": 16}


def test_range_config_pins_a_span():
    pinned = range_config_pb2.RangeConfig(
        static_range=range_config_pb2.StaticRange(start_span_number=2, end_span_number=2)
    )
    gen = ImageExampleGen(input_base="/data", span_pattern="span-{SPAN}", range_config=pinned)
    range_config = json.loads(gen.exec_properties["range_config"])
    assert range_config["static_range"] == {"start_span_number": 2, "end_span_number": 2}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_base": ""}, "Expected `input_base` to be a non-empty"),
        ({"input_base": None}, "Expected `input_base` to be a non-empty"),
        ({"span_pattern": "span-1"}, "Expected `span_pattern` to contain {SPAN}"),
        ({"span_pattern": "/abs/span-{SPAN}"}, "relative to `input_base`"),
        ({"train_eval_ratio": (4, 0)}, "Expected `train_eval_ratio` to be a pair"),
        ({"shards_per_split": 0}, "Expected `shards_per_split` to be None"),
        ({"shards_per_split": 2000}, "or an int in [1, 1024]"),
        ({"range_config": {"static_range": 1}, "span_pattern": "s-{SPAN}"}, "RangeConfig or None"),
        (
            {
                "range_config": range_config_pb2.RangeConfig(
                    rolling_range=range_config_pb2.RollingRange(num_spans=1)
                )
            },
            "Expected `span_pattern` (e.g. 'span-{SPAN}') when `range_config` is set",
        ),
        (
            {
                "span_pattern": "span-{SPAN}",
                "range_config": range_config_pb2.RangeConfig(
                    static_range=range_config_pb2.StaticRange(
                        start_span_number=1, end_span_number=3
                    )
                ),
            },
            "Expected a `range_config` that selects exactly one span",
        ),
    ],
)
def test_construction_errors_at_build_time(kwargs, message):
    kwargs.setdefault("input_base", "/data")
    with pytest.raises(ValueError, match="^Expected") as error:
        ImageExampleGen(**kwargs)
    assert message in str(error.value)
    assert "Received:" in str(error.value)

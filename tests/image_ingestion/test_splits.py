"""Hash split: config, determinism, and agreement with TFX's own partition function."""

import pytest
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2

from backbone_regularizer.components.image_ingestion import splits
from backbone_regularizer.components.image_ingestion.images import build_example


def test_output_config_uses_filename_hash_buckets():
    config = splits.make_output_config((3, 2))
    assert config.split_config.partition_feature_name == "filename"
    assert [(s.name, s.hash_buckets) for s in config.split_config.splits] == [
        ("train", 3),
        ("eval", 2),
    ]
    default = splits.make_output_config()
    assert [s.hash_buckets for s in default.split_config.splits] == [4, 1]


@pytest.mark.parametrize("ratio", [(4,), (0, 1), (4, -1), (True, 1), (4.0, 1), "4:1", None])
def test_invalid_ratio_is_rejected(ratio):
    with pytest.raises(ValueError, match=r"Expected `train_eval_ratio` to be a pair of positive"):
        splits.make_output_config(ratio)


def test_list_ratio_is_accepted():
    assert splits.validate_train_eval_ratio([7, 3]) == (7, 3)


@pytest.mark.parametrize("ratio", [(4, 1), (1, 1), (3, 2)])
def test_assign_split_matches_tfx_partition_fn(ratio):
    config = splits.make_output_config(ratio).split_config
    buckets = [ratio[0], ratio[0] + ratio[1]]
    for i in range(200):
        filename = f"class{i % 3}/img{i:04d}.png"
        example = build_example(b"bytes-do-not-matter", i % 3, f"class{i % 3}", filename)
        index = base_example_gen_executor._PartitionFn(example, 2, buckets, config)
        assert splits.assign_split(filename, ratio) == splits.SPLIT_NAMES[index]


def test_assign_split_depends_on_filename_only_and_is_deterministic():
    names = [f"cat/{i}.png" for i in range(50)]
    first = [splits.assign_split(n) for n in names]
    assert first == [splits.assign_split(n) for n in reversed(names)][::-1]
    assert set(first) == {"train", "eval"}


def test_assign_split_follows_the_ratio_on_many_files():
    names = [f"c/{i}.png" for i in range(2000)]
    train = sum(splits.assign_split(n, (4, 1)) == "train" for n in names) / len(names)
    assert 0.75 < train < 0.85
    assert sum(splits.assign_split(n, (1, 1)) == "eval" for n in names) / len(names) > 0.45


def test_split_names_match_tfx_output_split_names():
    from tfx.components.example_gen import utils

    names = utils.generate_output_split_names(
        example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="s", pattern="*/*")]),
        splits.make_output_config(),
    )
    assert names == ["train", "eval"]

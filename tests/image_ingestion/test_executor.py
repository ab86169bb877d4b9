"""Executor Do() on tiny folders written by the tests, spans resolved by TFX's real driver."""

import glob
import json
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing import util as beam_util
from tfx.components.example_gen import driver
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from backbone_regularizer.components.image_ingestion import images, shards, spans, splits
from backbone_regularizer.components.image_ingestion import report as rp
from backbone_regularizer.components.image_ingestion.custom_config import (
    SHARDS_PER_SPLIT_KEY,
    make_custom_config,
)
from backbone_regularizer.components.image_ingestion.executor import Executor
from backbone_regularizer.components.image_ingestion.plan import IngestionOptions
from backbone_regularizer.components.image_ingestion.transforms import WriteShards, write_plan
from tests.image_ingestion.folders import image_bytes, names_in_split, write_file, write_images

FEATURES = {
    images.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    images.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    images.LABEL_NAME_KEY: tf.io.FixedLenFeature([], tf.string),
    images.FILENAME_KEY: tf.io.FixedLenFeature([], tf.string),
    images.SPAN_KEY: tf.io.FixedLenFeature([], tf.int64),
}


def run_do(
    tmp_path,
    input_base,
    span_pattern=None,
    train_eval_ratio=(4, 1),
    resolve=True,
    shards_per_split=None,
    beam_args=(),
    output="output",
    **options,
):
    """Runs Executor.Do the way FileBasedExampleGen does: driver first, then the executor.

    ``options``: ``IngestionOptions`` fields besides ``span_pattern`` (as ImageExampleGen
    passes them in ``custom_config``).
    """
    ingestion = IngestionOptions(span_pattern, **options).settings()
    settings = make_custom_config({SHARDS_PER_SPLIT_KEY: shards_per_split, **ingestion})
    exec_properties = {
        "input_base": input_base,
        "input_config": proto_utils.proto_to_json(spans.make_input_config(span_pattern)),
        "output_config": proto_utils.proto_to_json(splits.make_output_config(train_eval_ratio)),
        "custom_config": settings and proto_utils.proto_to_json(settings),
        "output_data_format": 6,  # example_gen_pb2.FORMAT_TF_EXAMPLE
        "output_file_format": 5,  # example_gen_pb2.FORMAT_TFRECORDS_GZIP
    }
    if resolve:
        exec_properties = driver.FileBasedDriver(None).resolve_exec_properties(
            exec_properties, None, None
        )
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / output / "examples")
    context = Executor.Context(beam_pipeline_args=list(beam_args), tmp_dir=str(tmp_path / "tmp"))
    Executor(context).Do({}, {"examples": [examples]}, exec_properties)
    return examples, exec_properties


def split_files(examples, split):
    return sorted(glob.glob(os.path.join(examples.uri, f"Split-{split}", "*")))


def filenames_in(path):
    dataset = tf.data.TFRecordDataset([path], compression_type="GZIP")
    return [
        tf.io.parse_single_example(record, FEATURES)[images.FILENAME_KEY].numpy().decode()
        for record in dataset
    ]


def read_split(examples, split):
    files = glob.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
    assert files, f"no TFRecord files for split {split}"
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    rows = {}
    for record in dataset:
        parsed = tf.io.parse_single_example(record, FEATURES)
        filename = parsed[images.FILENAME_KEY].numpy().decode()
        span = int(parsed[images.SPAN_KEY].numpy())
        rows[filename if span == 0 else (span, filename)] = {
            "image": parsed[images.IMAGE_KEY].numpy(),
            "label": int(parsed[images.LABEL_KEY].numpy()),
            "label_name": parsed[images.LABEL_NAME_KEY].numpy().decode(),
        }
    return rows


def properties(examples):
    names = [
        rp.LABEL_MAP_PROPERTY,
        rp.NUM_CLASSES_PROPERTY,
        rp.UNREADABLE_IMAGES_PROPERTY,
        rp.SKIPPED_NON_IMAGE_FILES_PROPERTY,
        "count_train",
        "count_eval",
    ]
    return {
        name: (
            examples.get_string_custom_property(name)
            if name == rp.LABEL_MAP_PROPERTY
            else examples.get_int_custom_property(name)
        )
        for name in names
    }


def test_do_writes_split_examples_and_custom_properties(tmp_path):
    base = str(tmp_path / "pets")
    train = names_in_split("cat", "train", 3) + names_in_split("dog", "train", 2, suffix=".jpg")
    eval_ = names_in_split("cat", "eval", 1) + names_in_split("dog", "eval", 1, suffix=".jpeg")
    written = write_images(base, train + eval_)

    examples, _ = run_do(tmp_path, base)

    # No scratch left; the provenance record is written last (docs/provenance.md).
    assert sorted(os.listdir(examples.uri)) == ["Split-eval", "Split-train", "provenance.json"]
    assert examples.split_names == '["train", "eval"]'
    rows = {"train": read_split(examples, "train"), "eval": read_split(examples, "eval")}
    assert set(rows["train"]) == set(train)
    assert set(rows["eval"]) == set(eval_)
    for split_rows in rows.values():
        for filename, row in split_rows.items():
            label_name = filename.split("/")[0]
            assert row["label_name"] == label_name
            assert row["label"] == {"cat": 0, "dog": 1}[label_name]
            assert row["image"] == written[filename]  # stored as-is, not re-encoded
    assert properties(examples) == {
        "label_map": '{"cat":0,"dog":1}',
        "num_classes": 2,
        "unreadable_images": 0,
        "skipped_non_image_files": 0,
        "count_train": 5,
        "count_eval": 2,
    }
    assert examples.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"


def test_latest_span_is_ingested_with_the_first_spans_vocabulary(tmp_path):
    base = str(tmp_path / "pets")
    write_images(
        os.path.join(base, "span-2"),
        names_in_split("ant", "train", 1)
        + names_in_split("cat", "train", 2)
        + names_in_split("cat", "eval", 1)
        + names_in_split("dog", "eval", 1),
    )
    newest = names_in_split("cat", "train", 1) + names_in_split("dog", "eval", 2)  # no ant
    write_images(os.path.join(base, "span-10"), newest)

    examples, exec_properties = run_do(tmp_path, base, span_pattern="span-{SPAN}")

    assert exec_properties["span"] == 10
    assert "span-10/*/*" in exec_properties["input_config"]
    rows = read_split(examples, "train") | read_split(examples, "eval")
    assert set(rows) == {(10, name) for name in newest}
    # span-2 (the first span) fixed the vocabulary: without "ant", "dog" keeps index 2.
    assert {row["label_name"]: row["label"] for row in rows.values()} == {"cat": 1, "dog": 2}
    got = properties(examples)
    assert json.loads(got["label_map"]) == {"ant": 0, "cat": 1, "dog": 2}
    assert (got["count_train"], got["count_eval"]) == (1, 2)
    custom = examples.mlmd_artifact.custom_properties
    assert custom[rp.SPANS_PROPERTY].string_value == "[10]"
    assert custom[rp.LABEL_SOURCE_PROPERTY].string_value.startswith(
        "class folders of the first span, "
    )
    assert json.loads(custom[rp.CLASS_COUNTS_PROPERTY].string_value)["ant"] == {
        "train": 0,
        "eval": 0,
    }


def test_window_trains_on_older_spans_and_evaluates_on_the_newest(tmp_path):
    base = str(tmp_path / "pets")
    old_train = names_in_split("cat", "train", 2) + names_in_split("dog", "train", 1)
    old_eval = names_in_split("cat", "eval", 1)
    write_images(os.path.join(base, "span-1"), old_train + old_eval)
    write_images(os.path.join(base, "span-2"), names_in_split("dog", "train", 3))
    newest_train = names_in_split("cat", "train", 1)
    newest_eval = names_in_split("dog", "eval", 2)
    write_images(os.path.join(base, "span-3"), newest_train + newest_eval)
    write_images(str(tmp_path / "holdout"), ["cat/h0.png", "dog/h1.png", "dog/h2.png"])

    examples, _ = run_do(
        tmp_path,
        base,
        span_pattern="span-{SPAN}",
        span_window=2,
        holdout=str(tmp_path / "holdout"),
    )

    assert examples.split_names == '["train", "eval", "holdout"]'
    # Window 2: spans 2 and 3; span 1 (with its eval-hashed image) is out.
    train, eval_ = read_split(examples, "train"), read_split(examples, "eval")
    assert set(train) == {(2, n) for n in names_in_split("dog", "train", 3)} | {
        (3, n) for n in newest_train
    }
    assert set(eval_) == {(3, n) for n in newest_eval}
    holdout = read_split(examples, "holdout")
    assert set(holdout) == {(-1, "cat/h0.png"), (-1, "dog/h1.png"), (-1, "dog/h2.png")}
    assert {row["label"] for key, row in holdout.items() if key[1].startswith("dog")} == {1}
    custom = {k: v for k, v in examples.mlmd_artifact.custom_properties.items()}
    assert custom["count_holdout"].int_value == 3
    assert json.loads(custom[rp.SPANS_PROPERTY].string_value) == [2, 3]
    assert json.loads(custom[rp.SPAN_COUNTS_PROPERTY].string_value) == {
        "2": {"train": 3},
        "3": {"train": 1, "eval": 2},
    }
    assert json.loads(custom[rp.CLASS_COUNTS_PROPERTY].string_value) == {
        "cat": {"train": 1, "eval": 0, "holdout": 1},
        "dog": {"train": 3, "eval": 2, "holdout": 2},
    }


def test_window_keeps_only_the_train_files_of_older_spans(tmp_path):
    base = str(tmp_path / "pets")
    older = names_in_split("cat", "train", 2) + names_in_split("cat", "eval", 2)
    write_images(os.path.join(base, "span-1"), older)
    newest = names_in_split("cat", "train", 1) + names_in_split("cat", "eval", 1)
    write_images(os.path.join(base, "span-2"), newest)

    examples, _ = run_do(tmp_path, base, span_pattern="span-{SPAN}", span_window="all")

    train, eval_ = read_split(examples, "train"), read_split(examples, "eval")
    assert {key for key in train if key[0] == 1} == {
        (1, n) for n in names_in_split("cat", "train", 2)
    }
    assert set(eval_) == {(2, n) for n in names_in_split("cat", "eval", 1)}
    assert properties(examples)["count_train"] == 3


def test_a_class_the_vocabulary_lacks_fails_naming_it(tmp_path):
    base = str(tmp_path / "pets")
    write_images(os.path.join(base, "span-1"), names_in_split("cat", "train", 2))
    write_images(
        os.path.join(base, "span-2"),
        names_in_split("cat", "train", 1) + names_in_split("emu", "eval", 1),
    )
    with pytest.raises(ValueError, match=r"^Expected only class folders the label vocabulary"):
        run_do(tmp_path, base, span_pattern="span-{SPAN}")
    with pytest.raises(ValueError, match=r"Received: \['emu'\] in .*span-2") as error:
        run_do(tmp_path, base, span_pattern="span-{SPAN}", labels=("cat", "dog"))
    assert "['cat', 'dog'] (config `labels`)" in str(error.value)
    assert "grow_labels: true" in str(error.value)


def test_grow_labels_appends_new_classes_after_the_old_indices(tmp_path):
    base = str(tmp_path / "pets")
    write_images(
        os.path.join(base, "span-1"),
        names_in_split("cat", "train", 2) + names_in_split("dog", "eval", 1),
    )
    write_images(
        os.path.join(base, "span-2"),
        names_in_split("ant", "train", 1)
        + names_in_split("dog", "train", 1)
        + names_in_split("ant", "eval", 1),
    )
    examples, _ = run_do(tmp_path, base, span_pattern="span-{SPAN}", grow_labels=True)
    got = properties(examples)
    # "ant" sorts first but arrived second: it gets the next index, the others keep theirs.
    assert json.loads(got["label_map"]) == {"cat": 0, "dog": 1, "ant": 2}
    custom = examples.mlmd_artifact.custom_properties
    assert json.loads(custom[rp.LABELS_ADDED_PROPERTY].string_value) == ["ant"]


def test_unreadable_images_are_counted_not_written(tmp_path):
    base = str(tmp_path / "pets")
    good = names_in_split("cat", "train", 2) + names_in_split("cat", "eval", 1)
    write_images(base, good)
    write_file(os.path.join(base, "cat", "broken.png"), b"this is not a png")
    write_file(os.path.join(base, "dog", "truncated.jpg"), image_bytes(1, "JPEG")[:120])

    examples, _ = run_do(tmp_path, base)

    ingested = set(read_split(examples, "train")) | set(read_split(examples, "eval"))
    assert ingested == set(good)
    got = properties(examples)
    assert got["unreadable_images"] == 2
    assert got["skipped_non_image_files"] == 0
    assert got["count_train"] + got["count_eval"] == 3
    # The class folder with only a broken file still gets its label: the map follows folders.
    assert got["label_map"] == '{"cat":0,"dog":1}'


def test_non_image_files_are_counted_and_ignored(tmp_path):
    base = str(tmp_path / "pets")
    good = names_in_split("cat", "train", 2) + names_in_split("dog", "eval", 1)
    write_images(base, good)
    write_file(os.path.join(base, "cat", "labels.csv"), b"a,b")
    write_file(os.path.join(base, "dog", "notes.txt"), b"x")
    write_file(os.path.join(base, "README.md"), b"x")

    examples, _ = run_do(tmp_path, base)

    assert set(read_split(examples, "train")) | set(read_split(examples, "eval")) == set(good)
    got = properties(examples)
    assert got["skipped_non_image_files"] == 3
    assert got["unreadable_images"] == 0


def test_folder_without_class_folders_is_an_error(tmp_path):
    base = str(tmp_path / "flat")
    write_file(os.path.join(base, "a.png"), image_bytes())
    with pytest.raises(ValueError, match="^Expected class folders under") as error:
        run_do(tmp_path, base)
    assert "Received: entries ['a.png']" in str(error.value)


def test_class_folders_without_images_is_an_error(tmp_path):
    base = str(tmp_path / "pets")
    write_file(os.path.join(base, "cat", "notes.txt"), b"x")
    with pytest.raises(ValueError, match="^Expected image files") as error:
        run_do(tmp_path, base)
    assert "Received: 0 image files, 1 other entries" in str(error.value)


def test_empty_split_is_an_error(tmp_path):
    base = str(tmp_path / "pets")
    write_images(base, names_in_split("cat", "train", 3) + names_in_split("dog", "train", 1))
    with pytest.raises(ValueError, match="^Expected every split") as error:
        run_do(tmp_path, base)
    message = str(error.value)
    assert "['eval'] are empty" in message
    assert "count_train=4, count_eval=0" in message


def test_unresolved_span_pattern_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="FileBasedDriver fills in {SPAN}"):
        run_do(tmp_path, str(tmp_path), span_pattern="span-{SPAN}", resolve=False)


def test_shards_per_split_writes_that_many_files_dealt_round_robin(tmp_path):
    base = str(tmp_path / "pets")
    train = names_in_split("cat", "train", 4) + names_in_split("dog", "train", 3)
    eval_ = names_in_split("cat", "eval", 2)
    write_images(base, train + eval_)

    examples, _ = run_do(tmp_path, base, shards_per_split=3)

    files = split_files(examples, "train")
    assert [os.path.basename(f) for f in files] == [shards.shard_file_name(i, 3) for i in range(3)]
    ordered = sorted(train)
    assert [filenames_in(f) for f in files] == [ordered[i::3] for i in range(3)]
    # Fewer images than shards: one file per image, no empty file.
    assert [filenames_in(f) for f in split_files(examples, "eval")] == [[n] for n in sorted(eval_)]
    assert (properties(examples)["count_train"], properties(examples)["count_eval"]) == (7, 2)


def test_identical_inputs_give_identical_files(tmp_path):
    base = str(tmp_path / "pets")
    write_images(base, names_in_split("cat", "train", 5) + names_in_split("dog", "eval", 2))

    first, _ = run_do(tmp_path, base, shards_per_split=2, output="first")
    second, _ = run_do(tmp_path, base, shards_per_split=2, output="second")

    for split in ("train", "eval"):
        names = [os.path.basename(f) for f in split_files(first, split)]
        assert names == [os.path.basename(f) for f in split_files(second, split)]
        for a, b in zip(split_files(first, split), split_files(second, split), strict=True):
            with open(a, "rb") as fa, open(b, "rb") as fb:
                assert fa.read() == fb.read(), a


def test_beam_workers_raise_the_default_shard_count(tmp_path):
    base = str(tmp_path / "pets")
    write_images(base, names_in_split("cat", "train", 101) + names_in_split("dog", "eval", 1))

    examples, _ = run_do(
        tmp_path, base, beam_args=["--direct_running_mode=in_memory", "--direct_num_workers=2"]
    )

    # 101 images: one shard by size, two for two workers (each keeps >= ~100 images / 2).
    assert len(split_files(examples, "train")) == 2
    assert len(split_files(examples, "eval")) == 1
    assert sum(len(filenames_in(f)) for f in split_files(examples, "train")) == 101


def test_a_retry_on_the_same_uri_replaces_what_an_earlier_attempt_left(tmp_path):
    base = str(tmp_path / "pets")
    write_images(base, names_in_split("cat", "train", 3) + names_in_split("dog", "eval", 1))
    uri = tmp_path / "output" / "examples"
    write_file(str(uri / "Split-train" / shards.shard_file_name(1, 2)), b"partial")
    write_file(str(uri / ".image_ingestion" / "train-x.gz.0123"), b"partial")

    examples, _ = run_do(tmp_path, base)

    assert sorted(os.listdir(examples.uri)) == ["Split-eval", "Split-train", "provenance.json"]
    assert [os.path.basename(f) for f in split_files(examples, "train")] == [
        shards.shard_file_name(0, 1)
    ]
    assert len(read_split(examples, "train")) == 3


def test_an_output_config_it_does_not_write_is_refused(tmp_path):
    base = str(tmp_path / "pets")
    write_images(base, names_in_split("cat", "train", 2))
    exec_properties = {
        "input_base": base,
        "input_config": proto_utils.proto_to_json(spans.make_input_config(None)),
        "output_config": '{"split_config": {"splits": [{"name": "train", "hash_buckets": 1}]}}',
    }
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "output")
    with pytest.raises(ValueError, match="^Expected an output config with splits") as error:
        Executor().Do({}, {"examples": [examples]}, exec_properties)
    assert "Received: splits=['train'], partition_feature_name=''" in str(error.value)


def test_write_shards_alone_writes_planned_files_and_reports_counts(tmp_path):
    """The Beam transform outside Do: plan files in, shard files and per-shard counts out."""
    base = str(tmp_path / "pets")
    write_images(base, ["cat/a.png", "cat/b.png", "dog/c.jpg"])
    write_file(os.path.join(base, "dog", "bad.png"), b"not an image")
    folder = images.list_image_folder(base)
    plan = shards.plan_shards({"train": folder.images}, shards_per_split=2)
    split_dir, scratch = tmp_path / "Split-train", tmp_path / "scratch"
    split_dir.mkdir()
    scratch.mkdir()
    plan_paths = write_plan(plan, str(scratch / "plan"))

    with beam.Pipeline() as pipeline:
        results = pipeline | WriteShards(
            plan_paths, folder.label_map, {"train": str(split_dir)}, str(scratch)
        )
        # Sorted: cat/a, cat/b, dog/bad, dog/c; shard 0 = a + bad, shard 1 = b + c.
        beam_util.assert_that(results, beam_util.equal_to([("train", 1, 1), ("train", 2, 0)]))

    assert sorted(os.listdir(split_dir)) == [s.file_name for s in plan]
    assert sorted(os.listdir(scratch)) == ["plan"]  # written under scratch names, then renamed
    written = [name for f in sorted(split_dir.iterdir()) for name in filenames_in(str(f))]
    assert sorted(written) == ["cat/a.png", "cat/b.png", "dog/c.jpg"]

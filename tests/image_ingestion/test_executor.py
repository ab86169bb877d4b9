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

from backbone_regularizer.components.image_ingestion import images, spans, splits
from backbone_regularizer.components.image_ingestion import report as rp
from backbone_regularizer.components.image_ingestion.executor import Executor
from tests.image_ingestion.folders import image_bytes, names_in_split, write_file, write_images

FEATURES = {
    images.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    images.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    images.LABEL_NAME_KEY: tf.io.FixedLenFeature([], tf.string),
    images.FILENAME_KEY: tf.io.FixedLenFeature([], tf.string),
}


def run_do(tmp_path, input_base, span_pattern=None, train_eval_ratio=(4, 1), resolve=True):
    """Runs Executor.Do the way FileBasedExampleGen does: driver first, then the executor."""
    exec_properties = {
        "input_base": input_base,
        "input_config": proto_utils.proto_to_json(spans.make_input_config(span_pattern)),
        "output_config": proto_utils.proto_to_json(splits.make_output_config(train_eval_ratio)),
        "output_data_format": 6,  # example_gen_pb2.FORMAT_TF_EXAMPLE
        "output_file_format": 5,  # example_gen_pb2.FORMAT_TFRECORDS_GZIP
    }
    if resolve:
        exec_properties = driver.FileBasedDriver(None).resolve_exec_properties(
            exec_properties, None, None
        )
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "output" / "examples")
    Executor().Do({}, {"examples": [examples]}, exec_properties)
    return examples, exec_properties


def read_split(examples, split):
    files = glob.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
    assert files, f"no TFRecord files for split {split}"
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    rows = {}
    for record in dataset:
        parsed = tf.io.parse_single_example(record, FEATURES)
        filename = parsed[images.FILENAME_KEY].numpy().decode()
        rows[filename] = {
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


def test_latest_span_is_ingested(tmp_path):
    base = str(tmp_path / "pets")
    write_images(
        os.path.join(base, "span-2"),
        names_in_split("cat", "train", 2) + names_in_split("cat", "eval", 1),
    )
    newest = (
        names_in_split("ant", "train", 1)
        + names_in_split("cat", "train", 1)
        + names_in_split("dog", "eval", 2)
    )
    write_images(os.path.join(base, "span-10"), newest)

    examples, exec_properties = run_do(tmp_path, base, span_pattern="span-{SPAN}")

    assert exec_properties["span"] == 10
    assert "span-10/*/*" in exec_properties["input_config"]
    assert set(read_split(examples, "train")) | set(read_split(examples, "eval")) == set(newest)
    got = properties(examples)
    assert json.loads(got["label_map"]) == {"ant": 0, "cat": 1, "dog": 2}
    assert (got["count_train"], got["count_eval"]) == (2, 2)


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


def test_generate_examples_by_beam_alone_lists_the_folder_itself(tmp_path):
    """The TFX extension point also works outside Do (no listing cached, no counts branch)."""
    base = str(tmp_path / "pets")
    train = names_in_split("cat", "train", 2)
    eval_ = names_in_split("dog", "eval", 1)
    write_images(base, train + eval_)
    exec_properties = {
        "input_base": base,
        "input_config": proto_utils.proto_to_json(spans.make_input_config(None)),
        "output_config": proto_utils.proto_to_json(splits.make_output_config()),
    }

    def to_filename(example):
        return example.features.feature[images.FILENAME_KEY].bytes_list.value[0].decode()

    with beam.Pipeline() as pipeline:
        result = Executor().GenerateExamplesByBeam(pipeline, exec_properties)
        for split, expected in (("train", train), ("eval", eval_)):
            beam_util.assert_that(
                result[split] | f"Filename[{split}]" >> beam.Map(to_filename),
                beam_util.equal_to(expected),
                label=f"Check[{split}]",
            )

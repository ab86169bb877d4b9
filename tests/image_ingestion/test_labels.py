"""The label vocabulary: configured names, JSON round trip, checks and growth."""

import json

import pytest

from backbone_regularizer.components.image_ingestion import labels
from backbone_regularizer.components.image_ingestion.images import label_map_to_json


def test_configured_names_keep_their_order():
    vocabulary = labels.from_names(labels.check_labels(["dog", "cat", "ant"]))
    assert vocabulary == {"dog": 0, "cat": 1, "ant": 2}
    assert labels.names(vocabulary) == ["dog", "cat", "ant"]
    assert labels.from_json(label_map_to_json(vocabulary)) == vocabulary


@pytest.mark.parametrize(
    "value",
    [None, "cat", ["cat"], ["cat", ""], ["cat", 3], ["a/b", "c"], [".hidden", "c"]],
)
def test_invalid_configured_labels(value):
    with pytest.raises(ValueError, match=r"^Invalid config `labels`. Expected a list of at least"):
        labels.check_labels(value)


def test_duplicate_labels_are_named():
    with pytest.raises(ValueError, match=r"Received: \['cat'\] more than once"):
        labels.check_labels(["cat", "dog", "cat"])


@pytest.mark.parametrize("text", ["", "[1]", '{"a": 1}', '{"a": 0, "b": 0}', '{"a": "0"}'])
def test_from_json_refuses_what_is_not_a_label_map(text):
    with pytest.raises(ValueError, match="^Expected a label map") as error:
        labels.from_json(text, "where")
    assert f"Received: where={text!r}" in str(error.value)


def test_extend_without_grow_names_the_unknown_class_and_the_vocabulary():
    vocabulary = {"digit_5": 0, "digit_6": 1}
    assert labels.extend(vocabulary, ["digit_6"], "span-2", grow=False) is vocabulary
    with pytest.raises(ValueError) as error:
        labels.extend(vocabulary, ["digit_4", "digit_6"], "/data/span-3", False, "span-1")
    assert str(error.value).startswith(
        "Expected only class folders the label vocabulary names: ['digit_5', 'digit_6'] "
        "(span-1). Received: ['digit_4'] in /data/span-3."
    )


def test_extend_with_grow_appends_sorted_new_names():
    grown = labels.extend({"b": 0, "d": 1}, ["e", "a", "d"], "span-2", grow=True)
    assert grown == {"b": 0, "d": 1, "a": 2, "e": 3}


def test_label_map_file(tmp_path):
    assert labels.read_label_map_file(str(tmp_path)) is None
    (tmp_path / labels.LABEL_MAP_FILE).write_text(json.dumps({"a": 0, "b": 1}))
    assert labels.read_label_map_file(str(tmp_path)) == {"a": 0, "b": 1}

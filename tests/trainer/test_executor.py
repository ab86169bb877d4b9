"""The Trainer executor hands the Examples' label vocabulary to run_fn."""

import pytest
from tfx.types import standard_artifacts

from backbone_regularizer.pipeline.trainer.executor import examples_label_map, with_labels


def _examples(label_map: str | None):
    examples = standard_artifacts.Examples()
    examples.uri = "/examples"
    if label_map is not None:
        examples.set_string_custom_property("label_map", label_map)
    return examples


def test_the_vocabulary_sets_labels_and_the_head_size():
    label_map = examples_label_map([_examples('{"b":0,"a":1}')])
    assert label_map == {"b": 0, "a": 1}
    config = with_labels({"epochs": 3, "num_classes": None, "labels": None}, label_map)
    assert config == {"epochs": 3, "num_classes": 2, "labels": ["b", "a"]}
    assert with_labels({"num_classes": 2}, label_map)["labels"] == ["b", "a"]


def test_a_configured_head_size_that_differs_fails_before_training():
    with pytest.raises(ValueError) as error:
        with_labels({"num_classes": 5}, {"a": 0, "b": 1, "c": 2})
    assert str(error.value).startswith(
        "Invalid trainer setting `num_classes`. Expected 3, the size of the Examples' label "
        "vocabulary ['a', 'b', 'c'], or no value"
    )
    assert str(error.value).endswith("Received: num_classes=5")
    with pytest.raises(ValueError, match=r"Expected the Examples' label vocabulary \['a', 'b'\]"):
        with_labels({"labels": ["b", "a"]}, {"a": 0, "b": 1})


def test_examples_without_a_vocabulary_and_examples_that_disagree():
    assert examples_label_map([_examples(None)]) is None
    with pytest.raises(ValueError, match="^Expected one label vocabulary across"):
        examples_label_map([_examples('{"a":0,"b":1}'), _examples('{"b":0,"a":1}')])

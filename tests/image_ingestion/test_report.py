"""Ingestion report: custom properties and the empty-split check."""

import json

import pytest

from backbone_regularizer.components.image_ingestion import report as rp


def make_report(train=4, eval_=1, image_files=6, skipped=2):
    return rp.IngestionReport(
        label_map={"cat": 0, "dog": 1},
        split_counts={"train": train, "eval": eval_},
        image_files=image_files,
        skipped=skipped,
    )


def test_custom_properties_are_ints_and_strings():
    properties = make_report().custom_properties()
    assert properties == {
        "label_map": '{"cat":0,"dog":1}',
        "num_classes": 2,
        "unreadable_images": 1,
        "skipped_non_image_files": 2,
        "count_train": 4,
        "count_eval": 1,
    }
    assert all(type(value) in (int, str) for value in properties.values())
    assert json.loads(properties[rp.LABEL_MAP_PROPERTY]) == {"cat": 0, "dog": 1}
    assert rp.count_property("eval") == "count_eval"


def test_check_passes_when_every_split_has_examples():
    make_report().check()


def test_empty_split_names_the_split_and_the_counts():
    with pytest.raises(ValueError, match=r"^Expected every split") as error:
        make_report(train=3, eval_=0, image_files=4).check()
    message = str(error.value)
    assert "['eval'] are empty" in message
    assert "Received: count_train=3, count_eval=0, image_files=4, unreadable_images=1" in message


def test_more_examples_than_files_is_an_internal_error():
    with pytest.raises(RuntimeError, match="Expected at most 2 examples"):
        make_report(train=2, eval_=1, image_files=2).check()

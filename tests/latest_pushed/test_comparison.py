"""The label maps decide whether the candidate is compared with the production model."""

import pytest
from tfx.types import standard_artifacts

from backbone_regularizer.components.image_ingestion.labels import LABEL_MAP_FILE
from backbone_regularizer.components.latest_pushed import comparison
from backbone_regularizer.components.latest_pushed.component import (
    BASELINE_LABEL_MAP,
    COMPARES_PRODUCTION,
    latest_pushed_version,
)
from backbone_regularizer.components.latest_pushed.evaluator import production_classes

DIGITS = {"digit_5": 0, "digit_6": 1, "digit_7": 2}


def test_first_run_compares_the_candidate_with_itself():
    decision = comparison.decide(DIGITS, None, None, grow=False)
    assert not decision.compares and decision.label_map == DIGITS
    assert decision.reason.startswith("none: first run")


def test_equal_label_maps_compare_with_production():
    decision = comparison.decide(dict(DIGITS), "/serving/17", dict(DIGITS), grow=False)
    assert decision.compares and decision.label_map == DIGITS
    assert decision.reason == "production (same label map, 3 classes)"


def test_shifted_labels_fail_naming_both_maps():
    """The issue's run: span 2 without digit_5, its folders relabelled 0..N-1."""
    shifted = {"digit_6": 0, "digit_7": 1}
    with pytest.raises(ValueError) as error:
        comparison.decide(shifted, "/serving/17", DIGITS, grow=False)
    message = str(error.value)
    assert message.startswith(
        "Expected the candidate's label map to equal the production model's, so that their "
        'outputs mean the same classes. Received: candidate {"digit_6":0,"digit_7":1}, '
        'production (/serving/17) {"digit_5":0,"digit_6":1,"digit_7":2}.'
    )
    assert "Set the config's `labels`" in message


def test_a_grown_vocabulary_skips_the_comparison_only_with_grow_labels():
    grown = {**DIGITS, "digit_4": 3}
    with pytest.raises(ValueError, match="^Expected the candidate's label map to equal"):
        comparison.decide(grown, "/serving/17", DIGITS, grow=False)
    decision = comparison.decide(grown, "/serving/17", DIGITS, grow=True)
    assert not decision.compares and decision.label_map == grown
    assert decision.reason.startswith("none: the label vocabulary grew by ['digit_4']")
    reordered = {"digit_4": 0, "digit_5": 1, "digit_6": 2, "digit_7": 3}
    with pytest.raises(ValueError, match="With grow_labels only appending classes is allowed"):
        comparison.decide(reordered, "/serving/17", DIGITS, grow=True)


def test_a_production_model_without_a_label_map_is_refused():
    with pytest.raises(ValueError) as error:
        comparison.decide(DIGITS, "/serving/17", None, grow=False)
    message = str(error.value)
    assert message.startswith(
        f"Expected the production model /serving/17 to store its label map ({LABEL_MAP_FILE})"
    )
    assert 'e.g. {"digit_5":0,"digit_6":1,"digit_7":2}' in message
    with pytest.raises(ValueError, match="^Expected the candidate model to store its label map"):
        comparison.decide(None, "/serving/17", DIGITS, grow=False)


def test_latest_pushed_version_is_the_largest_number_with_a_saved_model(tmp_path):
    assert latest_pushed_version(str(tmp_path / "missing")) is None
    for name in ("17", "9", "200", "notes"):
        (tmp_path / name).mkdir()
    for name in ("17", "9"):
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert latest_pushed_version(str(tmp_path)) == str(tmp_path / "17")


def test_the_evaluator_requires_production_classes_only_when_comparing():
    baseline = standard_artifacts.Model()
    baseline.set_string_custom_property(BASELINE_LABEL_MAP, '{"a":0,"b":1,"c":2}')
    baseline.set_int_custom_property(COMPARES_PRODUCTION, 0)
    assert production_classes([baseline]) == []
    baseline.set_int_custom_property(COMPARES_PRODUCTION, 1)
    assert production_classes([baseline]) == [0, 1, 2]
    assert production_classes(None) == []


def _model_dir(folder, label_map: str | None):
    serving = folder / "Format-Serving"
    serving.mkdir(parents=True)
    (serving / "saved_model.pb").write_bytes(b"")
    if label_map is not None:
        (serving / LABEL_MAP_FILE).write_text(label_map)
    return folder


def _run_component(tmp_path, candidate_map: str, pushed_map: str | None, grow: int = 0):
    """LatestPushedModel's executor on folders: a candidate and, if given, a pushed version."""
    from backbone_regularizer.components.latest_pushed.component import LatestPushedModel

    serving = tmp_path / "serving"
    if pushed_map is not None:
        version = serving / "1700000000"
        version.mkdir(parents=True)
        (version / "saved_model.pb").write_bytes(b"")
        (version / LABEL_MAP_FILE).write_text(pushed_map)
    model, baseline = standard_artifacts.Model(), standard_artifacts.Model()
    model.uri = str(_model_dir(tmp_path / "candidate", candidate_map))
    baseline.uri = str(tmp_path / "baseline")
    executor = LatestPushedModel.EXECUTOR_SPEC.executor_class()
    executor.Do(
        {"model": [model]},
        {"baseline": [baseline]},
        {"push_destination": str(serving), "grow_labels": grow},
    )
    return baseline


def test_the_component_copies_production_only_when_the_label_maps_are_equal(tmp_path):
    same = '{"digit_5":0,"digit_6":1}'
    baseline = _run_component(tmp_path, same, same)
    assert baseline.get_int_custom_property(COMPARES_PRODUCTION) == 1
    assert baseline.get_string_custom_property(BASELINE_LABEL_MAP) == same
    assert baseline.get_string_custom_property("baseline_source").endswith("1700000000")
    assert (tmp_path / "baseline" / "Format-Serving" / LABEL_MAP_FILE).read_text() == same


def test_the_component_fails_on_shifted_labels_before_anything_is_evaluated(tmp_path):
    with pytest.raises(ValueError, match="^Expected the candidate's label map to equal") as error:
        _run_component(tmp_path, '{"digit_6":0,"digit_7":1}', '{"digit_5":0,"digit_6":1}')
    assert str(tmp_path / "serving" / "1700000000") in str(error.value)
    assert not (tmp_path / "baseline").exists()


def test_the_component_on_a_first_run_and_on_a_grown_vocabulary(tmp_path):
    first = _run_component(tmp_path / "first", '{"a":0,"b":1}', None)
    assert first.get_int_custom_property("first_run") == 1
    assert first.get_int_custom_property(COMPARES_PRODUCTION) == 0
    grown = _run_component(tmp_path / "grown", '{"a":0,"b":1,"c":2}', '{"a":0,"b":1}', grow=1)
    assert grown.get_int_custom_property(COMPARES_PRODUCTION) == 0
    assert grown.get_string_custom_property("comparison").startswith(
        "none: the label vocabulary grew by ['c']"
    )
    assert grown.get_string_custom_property("baseline_source") == "candidate (comparison skipped)"

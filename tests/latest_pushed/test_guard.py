"""The per-class guard in the eval config, and the production classes it requires."""

import tensorflow_model_analysis as tfma

from backbone_regularizer.components.latest_pushed import guard
from backbone_regularizer.pipeline.config import PipelineConfig
from backbone_regularizer.pipeline.create_pipeline import eval_config


def _thresholds(config: tfma.EvalConfig) -> list[tuple[list, dict]]:
    from google.protobuf import json_format

    (accuracy,) = [m for m in config.metrics_specs[0].metrics if "Accuracy" in m.class_name]
    return [
        (
            [json_format.MessageToDict(s) for s in t.slicing_specs],
            json_format.MessageToDict(t.threshold),
        )
        for t in accuracy.per_slice_thresholds
    ]


def test_overall_thresholds_name_the_overall_slice_and_the_guard_every_label():
    config = eval_config(PipelineConfig(min_accuracy=0.9, max_class_accuracy_drop=0.05))
    assert [tfma.SlicingSpec(), guard.label_slice("label")] == list(config.slicing_specs)[:2]
    assert list(config.slicing_specs)[2] == tfma.SlicingSpec(feature_keys=["span"])
    overall, per_class = _thresholds(config)
    assert overall[0] == [{}]  # only the overall slice: a slice-less threshold would apply to all
    assert overall[1]["valueThreshold"]["lowerBound"] == 0.9
    assert overall[1]["changeThreshold"]["absolute"] == -0.02
    assert per_class[0] == [{"featureKeys": ["label"]}]
    assert per_class[1]["changeThreshold"] == {
        "direction": "HIGHER_IS_BETTER",
        "absolute": -0.05,
    }
    assert not config.metrics_specs[0].metrics[0].HasField("threshold")


def test_the_guard_can_be_turned_off():
    config = eval_config(PipelineConfig(max_class_accuracy_drop=None))
    assert len(_thresholds(config)) == 1
    assert not guard.has_guard(config, "label")
    assert guard.require_classes(config, "label", [0, 1]) == config


def test_require_classes_names_each_production_class_in_place_of_the_wildcard():
    config = eval_config(PipelineConfig(max_class_accuracy_drop=0.1))
    required = guard.require_classes(config, "label", [2, 0, 1])
    assert _thresholds(config)[1][0] == [{"featureKeys": ["label"]}]  # the original unchanged
    overall, (slices, threshold) = _thresholds(required)
    assert overall == _thresholds(config)[0]
    assert slices == [{"featureValues": {"label": str(i)}} for i in (0, 1, 2)]
    assert threshold == _thresholds(config)[1][1]
    # The label slices are still computed for every class (the report's table).
    assert guard.label_slice("label") in required.slicing_specs

"""What the widely copied 2019 recipe misses on Keras 3, next to what regularize() covers."""

import pytest

from backbone_regularizer.components.regularizer import RegularizationSpec, regularize
from backbone_regularizer.components.regularizer.audit import audit
from benchmarks.legacy_2019 import add_regularization_2019
from tests import zoo


def test_2019_method_skips_every_depthwise_kernel_of_mobilenet_v2():
    legacy = add_regularization_2019(zoo.mobilenet_v2(include_top=False))
    summary = audit(legacy)["summary"]
    assert summary["kernel_like"] == 52
    assert summary["regularized"] == 35
    assert len(summary["missed"]) == 17
    assert all("depthwise" in path for path in summary["missed"])
    assert len(legacy.losses) == 35

    ours = zoo.mobilenet_v2(include_top=False)
    regularize(ours, RegularizationSpec(l2=1e-4))
    assert audit(ours)["summary"]["missed"] == []
    assert len(ours.losses) == 52


def test_2019_method_misses_a_nested_backbone_entirely():
    legacy = add_regularization_2019(zoo.nested_backbone_with_head())
    assert len(legacy.losses) == 1  # only the head's Dense
    assert len(audit(legacy)["summary"]["missed"]) == 52


def test_2019_method_crashes_on_recurrent_layers():
    with pytest.raises(AttributeError):
        add_regularization_2019(zoo.text_rnn())

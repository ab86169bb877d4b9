"""Coverage plots of an audit: the 2019 method's gaps are in the data drawn, not just a PNG."""

import keras
import numpy as np
import pytest

from backbone_regularizer.components.regularizer import RegularizationSpec, regularize
from backbone_regularizer.components.regularizer.audit import audit
from backbone_regularizer.components.regularizer.coverage_plot import (
    MISSED,
    NOT_TARGETED,
    REGULARIZED,
    coverage_by_kind,
    penalties_by_weight,
    plot_coverage,
    write_audit_plot,
)
from benchmarks.legacy_2019 import add_regularization_2019
from tests import zoo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000  # two panels with bars, not an empty canvas


def test_2019_plot_shows_every_depthwise_kernel_missed(tmp_path):
    legacy = add_regularization_2019(zoo.mobilenet_v2(include_top=False))
    counts = write_audit_plot(legacy, tmp_path / "legacy.png")
    assert_png(tmp_path / "legacy.png")
    assert counts["depthwise"] == {REGULARIZED: 0, MISSED: 17, NOT_TARGETED: 0}
    assert counts["kernel"] == {REGULARIZED: 35, MISSED: 0, NOT_TARGETED: 0}
    assert counts["gamma"] == counts["beta"] == {REGULARIZED: 0, MISSED: 0, NOT_TARGETED: 52}
    assert list(counts)[:2] == ["kernel", "depthwise"]  # kernel-like kinds first
    penalties = penalties_by_weight(legacy)
    assert len(penalties) == 35
    assert not any("depthwise" in path for path in penalties)


def test_regularize_covers_the_depthwise_kernels_the_2019_method_misses(tmp_path):
    model = zoo.mobilenet_v2(include_top=False)
    regularize(model, RegularizationSpec(l2=1e-4))
    counts = write_audit_plot(model, tmp_path / "ours.png")
    assert_png(tmp_path / "ours.png")
    assert counts["depthwise"] == {REGULARIZED: 17, MISSED: 0, NOT_TARGETED: 0}
    assert sum(row[MISSED] for row in counts.values()) == 0


def test_penalties_follow_the_regularizer_formula():
    model = zoo.mobilenet_v2(include_top=False)
    regularize(model, RegularizationSpec(l2=1e-3))
    penalties = penalties_by_weight(model)
    assert len(penalties) == 52
    rows = {r["path"]: r for r in audit(model)["weights"]}
    assert set(penalties) <= set(rows)  # same paths as the audit rows the plot draws
    path = next(p for p in penalties if "block_1_depthwise" in p)
    layer = model.get_layer("block_1_depthwise")
    expected = 1e-3 * float(np.sum(np.square(keras.ops.convert_to_numpy(layer.kernel))))
    assert penalties[path] == pytest.approx(expected, rel=1e-5)
    assert sum(penalties.values()) == pytest.approx(
        float(sum(float(x) for x in model.losses)), rel=1e-5
    )


def test_plot_coverage_without_penalties_still_marks_missed_weights(tmp_path):
    legacy = add_regularization_2019(zoo.mobilenet_v2(include_top=False))
    result = audit(legacy)
    plot_coverage(result, tmp_path / "no_penalties.png")
    assert_png(tmp_path / "no_penalties.png")
    assert coverage_by_kind(result)["depthwise"][MISSED] == 17


@pytest.mark.parametrize("bad", [{"summary": {}}, {"weights": [{"path": "x"}]}, ["rows"]])
def test_plot_coverage_rejects_what_is_not_an_audit(tmp_path, bad):
    with pytest.raises(ValueError, match=r"Expected an audit result.*Received: audit_result="):
        plot_coverage(bad, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()

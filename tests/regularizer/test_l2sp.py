"""L2-SP: alpha/2 * ||w - w0||^2 toward the recorded weights, verified and carried like L2."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from backbone_regularizer.components.regularizer import (
    RegularizationSpec,
    VerificationError,
    regularize,
    regularize_file,
    verify,
)
from backbone_regularizer.components.regularizer.penalties import L2SP, head_l2
from backbone_regularizer.pipeline.cli.main import main
from tests import zoo

ALPHA = 0.01
SPEC = RegularizationSpec(l2_sp=ALPHA)


def test_spec_kind_summary_and_errors():
    assert SPEC.regularizer_summary() == "L2SP(alpha=0.01)"
    assert RegularizationSpec.from_json(SPEC.to_json()) == SPEC
    with pytest.raises(ValueError, match="either l2_sp or l1/l2/custom"):
        RegularizationSpec(l2=1e-4, l2_sp=ALPHA)
    with pytest.raises(ValueError, match="l2_sp"):
        RegularizationSpec(l2_sp=-1.0)


def test_unanchored_penalty_is_an_error_not_a_silent_zero():
    with pytest.raises(ValueError, match="Expected an anchored L2SP"):
        L2SP(ALPHA)(np.ones(3, "float32"))
    with pytest.raises(ValueError, match="alpha"):
        L2SP(0.0)


def test_head_l2_is_beta_over_two():
    w = np.array([1.0, 2.0], "float32")
    assert float(head_l2(0.1)(w)) == pytest.approx(0.1 / 2 * 5)


def test_zero_at_the_start_and_alpha_half_squared_distance_after_a_change():
    model = zoo.shared_layer()
    report = regularize(model, SPEC)
    assert len(model.losses) == 2
    result = verify(model, report)
    # Exactly zero: the numpy recompute from the recorded weights and Keras' value agree.
    assert result.penalty["total_in_loss"] == 0.0 == result.penalty["numpy_recompute"]
    # Each weight has its own anchor; moving one weight costs alpha/2 * ||dw||^2.
    kernel = model.get_layer("out").kernel
    dw = np.random.default_rng(0).normal(size=kernel.shape).astype("float32")
    before = kernel.numpy()
    kernel.assign(before + dw)
    expected = ALPHA / 2 * float(np.sum(((before + dw) - before).astype(np.float64) ** 2))
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-6)
    assert verify(model, report, fingerprint=False).penalty["numpy_recompute"] == pytest.approx(
        expected, rel=1e-6
    )
    with pytest.raises(VerificationError) as err:  # the weights are no longer the recorded ones
        verify(model, report)
    assert err.value.check == "weights_unchanged"


def test_an_anchor_that_is_not_the_recorded_weights_fails_coverage():
    model = zoo.shared_layer()
    report = regularize(model, SPEC)
    kernel = model.get_layer("out").kernel
    kernel.regularizer.anchor_to(kernel.numpy() + 1.0)
    with pytest.raises(VerificationError, match="anchor") as err:
        verify(model, report)
    assert err.value.check == "coverage"
    assert err.value.weights == ["shared_model/out/kernel"]


def test_round_trip_anchors_to_the_file_weights_once(tmp_path):
    src, dst = tmp_path / "src.keras", tmp_path / "dst.keras"
    zoo.mobilenet_v2(include_top=False).save(src)
    report = regularize_file(src, dst, SPEC)
    assert report.passed and report.penalty["total_in_loss"] == 0.0
    # The anchor is never written: only the plan restores it, for every weight.
    assert report.counts["carried_by"] == {"plan": 52}
    reloaded = keras.saving.load_model(dst)
    assert len(reloaded.losses) == 52 and float(sum(reloaded.losses)) == 0.0
    kernel = reloaded.get_layer("Conv1").kernel
    assert np.array_equal(kernel.regularizer.anchor_numpy(), kernel.numpy())
    # A later load_weights (a checkpoint restored during training) does not move the anchor.
    anchor = kernel.regularizer.anchor_numpy()
    kernel.assign(kernel.value + 0.5)
    reloaded.save_weights(tmp_path / "moved.weights.h5")
    reloaded.load_weights(tmp_path / "moved.weights.h5")
    assert np.array_equal(kernel.regularizer.anchor_numpy(), anchor)
    expected = ALPHA / 2 * 0.25 * kernel.numpy().size
    assert float(sum(reloaded.losses)) == pytest.approx(expected, rel=1e-5)


def test_l2sp_on_a_kerashub_backbone_with_tokens_selected(tmp_path):
    src, dst = tmp_path / "src.keras", tmp_path / "dst.keras"
    zoo.hub_vit().save(src)
    spec = RegularizationSpec(l2_sp=ALPHA, extra_kinds=("class_token",))
    report = regularize_file(src, dst, spec)
    # 7 kernels + the position Embedding + the class token (no slot), all through the plan.
    assert report.counts["carried_by"] == {"plan": 9}
    reloaded = keras.saving.load_model(dst)
    assert len(reloaded.losses) == 9 and float(sum(reloaded.losses)) == 0.0


def test_cli_flag(tmp_path):
    zoo.shared_layer().save(tmp_path / "src.keras")
    result = CliRunner().invoke(
        main,
        ["regularize", str(tmp_path / "src.keras"), str(tmp_path / "dst.keras"), "--l2-sp", "0.01"],
    )
    assert result.exit_code == 0, result.output
    assert "L2SP(alpha=0.01) on 2 weights" in result.output
    assert "file format: regularized-envelope (2 L2-SP penalties" in result.output
    saved = json.loads((tmp_path / "dst.report.json").read_text())
    assert saved["regularizer"]["class_name"] == "L2SP"
    assert saved["penalty"]["total_in_loss"] == 0.0

"""verify(): each check passes on a correct model and fails, by name, on a tampered one."""

import keras
import numpy as np
import pytest

from backbone_regularizer.components.regularizer import (
    RegularizationSpec,
    VerificationError,
    capture_baseline,
    checks,
    plan,
    regularize,
    verify,
)
from backbone_regularizer.components.regularizer.fingerprint import predict_probe
from backbone_regularizer.components.regularizer.keras_file import weights_digest, weights_sha256
from tests import zoo


@pytest.fixture
def regularized():
    model = zoo.shared_layer()
    return model, regularize(model, RegularizationSpec(l2=1e-3))


def test_all_checks_pass_and_are_listed(regularized):
    model, report = regularized
    result = verify(model, report)
    assert [c["name"] for c in result.checks] == [
        "coverage",
        "loss_terms",
        "penalty",
        "weights_unchanged",
        "predictions_unchanged",
    ]
    assert result.penalty["total_in_loss"] == pytest.approx(result.penalty["numpy_recompute"])


def test_variable_without_regularizer_fails_coverage(regularized):
    model, report = regularized
    model.get_layer("out").kernel.regularizer = None
    with pytest.raises(VerificationError, match="variable.regularizer") as err:
        verify(model, report)
    assert err.value.check == "coverage"
    assert err.value.weights == ["shared_model/out/kernel"]


def test_config_without_regularizer_fails_coverage(regularized):
    model, report = regularized
    model.get_layer("shared").kernel_regularizer = None
    with pytest.raises(VerificationError, match="layer config does not serialize") as err:
        verify(model, report)
    assert err.value.weights == ["shared_model/shared/kernel"]


def test_plan_without_a_weight_fails_coverage(regularized):
    model, report = regularized
    out = next(w["key"] for w in report.regularized if w["path"] == "shared_model/out/kernel")
    plan.set_plan(model, {k: v for k, v in plan.get_plan(model).items() if k != out})
    with pytest.raises(VerificationError, match="lost on save") as err:
        verify(model, report)
    assert err.value.check == "coverage"
    assert err.value.weights == ["shared_model/out/kernel"]


def test_unexpected_penalty_fails_loss_terms(regularized):
    model, report = regularized
    model.get_layer("out").bias.regularizer = keras.regularizers.L2(1.0)
    with pytest.raises(VerificationError, match="differ from the report") as err:
        verify(model, report)
    assert err.value.check == "loss_terms"
    assert err.value.weights == ["shared_model/out/bias"]


def test_layer_frozen_after_the_report_fails_loss_terms(regularized):
    model, report = regularized
    model.get_layer("out").trainable = False
    with pytest.raises(VerificationError) as err:
        verify(model, report)
    assert err.value.check == "loss_terms"


def test_penalty_mismatch_fails_penalty(regularized, monkeypatch):
    model, report = regularized
    real = checks.numpy_penalty
    monkeypatch.setattr(checks, "numpy_penalty", lambda c, v, a: real(c, v, a) * (1 + 1e-5))
    with pytest.raises(VerificationError, match="numpy recompute") as err:
        verify(model, report)
    assert err.value.check == "penalty"


def test_changed_weight_fails_weights_unchanged(regularized):
    model, report = regularized
    kernel = model.get_layer("out").kernel
    kernel.assign(kernel.value * 1.0001)
    # The predictions changed too (check 5); checks 4 and 5 run concurrently (the hash on a
    # helper thread), and the first failed check in order is the one reported.
    outputs = predict_probe(model, report.baseline.probe_batch)
    assert not np.array_equal(outputs[0], report.baseline.probe_outputs[0])
    with pytest.raises(VerificationError) as err:
        verify(model, report)
    assert err.value.check == "weights_unchanged"


def test_changed_behaviour_fails_predictions_unchanged(regularized):
    model, report = regularized
    model.get_layer("out").activation = keras.activations.softmax
    with pytest.raises(VerificationError, match="max \\|diff\\|") as err:
        verify(model, report)
    assert err.value.check == "predictions_unchanged"


def test_threaded_digest_equals_the_sequential_one():
    model = zoo.shared_layer()
    baseline = capture_baseline(model, 2)
    assert baseline.weights_sha256 == weights_sha256(model)
    with weights_digest(model) as digest:
        assert digest.result() == weights_sha256(model)
    with weights_digest(model) as unread:
        pass
    assert unread.done()  # leaving the block waits for the hash: none outlives it

"""Re-derive every claim of a regularization report from the model itself.

Checks, in order; the first failure raises ``VerificationError`` naming the check and weights:

1. ``coverage``: every regularized weight carries the regularizer on the variable; in the
   model's regularization plan (what ``save_regularized`` writes into an envelope file) where
   the model has one, and always where only the plan can carry it (no regularizer slot, L2-SP);
   where the weight has a regularizer slot, in the config of the layer that serializes it; an
   L2-SP penalty's anchor equals the recorded weight; every layer the freeze policy froze is
   still frozen;
2. ``loss_terms``: ``len(model.losses)`` equals the number of regularized trainable weights;
3. ``penalty``: the total penalty equals a float64 numpy recompute from the weights (rtol 1e-6;
   L2-SP from the recorded weights ``w0``, so at the start both must be exactly 0);
4. ``weights_unchanged``: the weights' SHA-256 equals the input model's;
5. ``predictions_unchanged``: predictions on the seeded probe batch are bit-identical.
"""

from __future__ import annotations

import dataclasses
import math
import time

import keras
import numpy as np

from backbone_regularizer.components.regularizer.fingerprint import predict_probe
from backbone_regularizer.components.regularizer.keras_file import (
    iter_layers,
    layer_keys,
    weights_digest,
)
from backbone_regularizer.components.regularizer.penalties import needs_anchor
from backbone_regularizer.components.regularizer.plan import get_plan
from backbone_regularizer.components.regularizer.report import RegularizationReport
from backbone_regularizer.components.regularizer.slots import Slot, find_slots

PENALTY_RTOL = 1e-6


class VerificationError(AssertionError):
    """A verification check failed: the model is not what the report claims."""

    def __init__(self, check: str, message: str, weights: list[str] | None = None):
        self.check = check
        self.weights = list(weights or [])
        shown = f" Weights: {self.weights[:10]}" + (
            f" (+{len(self.weights) - 10} more)" if len(self.weights) > 10 else ""
        )
        super().__init__(f"Check `{check}` failed: {message}" + (shown if weights else ""))


@dataclasses.dataclass
class Verification:
    passed: bool
    checks: list[dict]
    penalty: dict
    seconds: float


def _same_regularizer(serialized, expected: dict) -> bool:
    if not isinstance(serialized, dict):
        return False
    return serialized.get("class_name") == expected.get("class_name") and serialized.get(
        "config"
    ) == expected.get("config")


def numpy_penalty(regularizer_config: dict, value: np.ndarray, anchor=None) -> float:
    """Keras' L1/L2/L1L2 formula in float64, L2-SP's ``alpha/2 * sum((w - w0)**2)`` with the
    recorded ``anchor`` w0; other regularizers are recomputed by a fresh instance deserialized
    from the config (never the live object on the variable)."""
    name, config = regularizer_config["class_name"], regularizer_config.get("config") or {}
    if name == "L2SP":
        if anchor is None:
            raise ValueError("Expected the recorded weights w0 to recompute an L2-SP penalty.")
        diff = value.astype(np.float64) - np.asarray(anchor).astype(np.float64)
        return float(config["alpha"]) / 2.0 * float(np.einsum("i,i->", diff.ravel(), diff.ravel()))
    if name in ("L1", "L2", "L1L2"):
        flat = np.ascontiguousarray(value).ravel()
        l1, l2 = float(config.get("l1", 0.0)), float(config.get("l2", 0.0))
        # Accumulate in float64 without materialising a float64 copy of the weight.
        total = l2 * float(np.einsum("i,i->", flat, flat, dtype=np.float64)) if l2 else 0.0
        return total + (l1 * float(np.abs(flat).sum(dtype=np.float64)) if l1 else 0.0)
    w = value.astype(np.float64)
    fresh = keras.regularizers.deserialize(regularizer_config)
    return float(keras.ops.convert_to_numpy(fresh(keras.ops.convert_to_tensor(w))))


def verify(
    model: keras.Model, report: RegularizationReport, fingerprint: bool = True
) -> Verification:
    """Run the checks on ``model`` against ``report`` (and its in-memory baseline).

    Use it on the model ``regularize`` changed, and on the model reloaded from disk.
    ``fingerprint=False`` runs checks 1-3 only (what attaching can get wrong); checks 4-5
    (weights, predictions) are what saving and reloading can get wrong.

    With ``fingerprint=True`` the weights checksum (check 4) is taken on a helper thread while
    checks 1-3 and the probe's forward pass run; every check only reads the model.

    Raises:
        VerificationError: on the first failed check.
    """
    started = time.perf_counter()
    if not fingerprint:
        checks, penalty = _attachment_checks(model, report)
        return Verification(True, checks, penalty, round(time.perf_counter() - started, 6))
    with weights_digest(model) as digest:
        checks, penalty = _attachment_checks(model, report)
        outputs = predict_probe(model, report.baseline.probe_batch)
        sha256 = digest.result()
    checks.append(_weights_unchanged(sha256, report))
    checks.append(_predictions_unchanged(outputs, report))
    return Verification(True, checks, penalty, round(time.perf_counter() - started, 6))


def _attachment_checks(model: keras.Model, report: RegularizationReport) -> tuple[list[dict], dict]:
    """Checks 1-3 (what attaching can get wrong): their results, in order, and the penalty."""
    checks: list[dict] = []  # results, in order
    expected = report.regularizer
    weights = find_slots(model).by_key()
    plan = get_plan(model)
    # Weights are matched by structural key (names may be regenerated on reload) and named
    # by the report's readable paths.
    keys = [w["key"] for w in report.regularized]
    name = {w["key"]: w["path"] for w in report.regularized + report.preexisting}

    # 1. coverage
    missing = [name[k] for k in keys if k not in weights]
    if missing:
        raise VerificationError("coverage", "weights of the report are not in the model", missing)
    bad_variable = [
        name[k]
        for k in keys
        if weights[k].variable.regularizer is None
        or not _same_regularizer(
            keras.regularizers.serialize(weights[k].variable.regularizer), expected
        )
    ]
    if bad_variable:
        raise VerificationError(
            "coverage", f"variable.regularizer is not {report.regularizer_summary}", bad_variable
        )
    # A model loaded from a plain Keras file has no plan: its layer configs carried every
    # penalty (checked below), and nothing only a plan can carry may be in such a file.
    not_planned = [
        name[k]
        for k in keys
        if (
            plan
            or not isinstance(weights[k], Slot)
            or needs_anchor(weights[k].variable.regularizer)
        )
        and not _same_regularizer(plan.get(k), expected)
    ]
    if not_planned:
        raise VerificationError(
            "coverage",
            f"the model's regularization plan does not carry {report.regularizer_summary} "
            "(the penalty would be lost on save)",
            not_planned,
        )
    bad_config = [
        name[k]
        for k in keys
        if isinstance(weights[k], Slot)
        and not _same_regularizer(
            weights[k].config_owner.get_config().get(weights[k].attribute), expected
        )
    ]
    if bad_config:
        raise VerificationError(
            "coverage",
            f"the layer config does not serialize {report.regularizer_summary} "
            "(a plain save of the layer would lose the penalty)",
            bad_config,
        )
    bad_anchor = [
        name[k]
        for k in keys
        if needs_anchor(weights[k].variable.regularizer)
        and not (
            weights[k].variable.regularizer.anchored
            and k in report.baseline.anchors
            and np.array_equal(
                weights[k].variable.regularizer.anchor_numpy(), report.baseline.anchors[k]
            )
        )
    ]
    if bad_anchor:
        raise VerificationError(
            "coverage", "the L2-SP anchor w0 differs from the recorded weights", bad_anchor
        )
    keys_by_id = layer_keys(model)
    layer_paths = {keys_by_id[id(layer)]: (path, layer) for path, layer, _ in iter_layers(model)}
    thawed = [
        layer_paths[k][0] if k in layer_paths else k
        for k in report.frozen_keys
        if k not in layer_paths or layer_paths[k][1].trainable
    ]
    if thawed:
        raise VerificationError(
            "coverage",
            "layers the freeze policy froze are trainable in this model (`trainable=False` "
            "was lost)",
            thawed,
        )
    checks.append(
        {
            "name": "coverage",
            "passed": True,
            "weights": len(report.regularized),
            "frozen_layers": len(report.frozen_keys),
        }
    )

    # 2. loss_terms
    trainable = {id(v) for v in model.trainable_weights}
    live = [w for w in weights.values() if id(w.variable) in trainable and w.variable.regularizer]
    expected_live = {w["key"] for w in report.regularized if w["trainable"]} | {
        p["key"]
        for p in report.preexisting
        if not p["replaced"] and id(weights[p["key"]].variable) in trainable
    }
    actual_live = {w.key for w in live}
    if actual_live != expected_live:
        raise VerificationError(
            "loss_terms",
            "the weights whose penalty reaches the loss differ from the report "
            f"({len(actual_live - expected_live)} unexpected, "
            f"{len(expected_live - actual_live)} missing or frozen)",
            sorted(name.get(k, weights[k].path) for k in actual_live ^ expected_live),
        )
    losses = model.losses  # each access recomputes every penalty: read it once
    terms = len(losses)
    if terms != len(live):
        raise VerificationError(
            "loss_terms",
            f"expected {len(live)} terms in model.losses (one per regularized trainable "
            f"weight), received {terms}",
        )
    checks.append({"name": "loss_terms", "passed": True, "terms": terms})

    # 3. penalty
    keras_total = float(sum(float(keras.ops.convert_to_numpy(x)) for x in losses))
    per_weight = {}
    for weight in weights.values():
        if weight.variable.regularizer is not None:
            value = np.asarray(weight.variable)
            config = keras.regularizers.serialize(weight.variable.regularizer)
            anchor = report.baseline.anchors.get(weight.key)
            if anchor is None and needs_anchor(weight.variable.regularizer):
                anchor = weight.variable.regularizer.anchor_numpy()  # a preexisting L2-SP
            per_weight[weight.key] = numpy_penalty(config, value, anchor)
    numpy_total = float(sum(per_weight[w.key] for w in live))
    if not math.isclose(keras_total, numpy_total, rel_tol=PENALTY_RTOL, abs_tol=0.0):
        raise VerificationError(
            "penalty",
            f"sum(model.losses)={keras_total!r} differs from the numpy recompute "
            f"{numpy_total!r} by more than rtol={PENALTY_RTOL}",
        )
    checks.append({"name": "penalty", "passed": True, "keras": keras_total, "numpy": numpy_total})

    penalty = {
        "total_in_loss": keras_total,
        "numpy_recompute": numpy_total,
        "frozen_not_in_loss": float(
            sum(per_weight[w["key"]] for w in report.regularized if not w["trainable"])
        ),
        "per_weight": per_weight,
    }
    return checks, penalty


def _weights_unchanged(digest: str, report: RegularizationReport) -> dict:
    """Check 4 on the model's weights checksum ``digest``."""
    if digest != report.baseline.weights_sha256:
        raise VerificationError(
            "weights_unchanged",
            f"weights SHA-256 {digest} differs from the input model's "
            f"{report.baseline.weights_sha256}",
        )
    return {"name": "weights_unchanged", "passed": True, "sha256": digest}


def _predictions_unchanged(outputs: list[np.ndarray], report: RegularizationReport) -> dict:
    """Check 5 on the model's ``outputs`` for the baseline's probe batch."""
    expected_shapes = [b.shape for b in report.baseline.probe_outputs]
    if [a.shape for a in outputs] != expected_shapes:
        raise VerificationError(
            "predictions_unchanged",
            f"probe output shapes {[a.shape for a in outputs]} differ from {expected_shapes}",
        )
    diff = max(
        (
            float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            for a, b in zip(outputs, report.baseline.probe_outputs, strict=True)
            if a.size
        ),
        default=0.0,
    )
    if diff != 0.0:  # NaN also fails here
        raise VerificationError(
            "predictions_unchanged",
            f"probe predictions changed: max |diff| = {diff!r}, expected 0.0",
        )
    return {"name": "predictions_unchanged", "passed": True, "max_abs_diff": diff}

"""Attach regularizers to a built Keras model in place, without rebuilding it.

Setting ``layer.kernel_regularizer`` on a built layer only changes its config; the penalty
lives on the variable (``variable.regularizer``). We set both, so the penalty is live now and
survives ``.keras`` save and reload.

>>> import keras
>>> from components.regularizer import RegularizationSpec, regularize, verify
>>> model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35)
>>> report = regularize(model, RegularizationSpec(l2=1e-4))
>>> verify(model, report).passed  # raises VerificationError on any failed check
True
"""

from __future__ import annotations

import math
import re
import time

import keras

from components.regularizer.fingerprint import (
    arrays_sha256,
    predict_probe,
    probe_batch,
    weights_sha256,
)
from components.regularizer.report import Baseline, RegularizationReport
from components.regularizer.slots import (
    Slot,
    find_slots,
    iter_layers,
    own_variables,
    set_slot_attribute,
)
from components.regularizer.spec import RegularizationSpec


def capture_baseline(model: keras.Model, batch_size: int) -> Baseline:
    """Fingerprint the model before it is changed: weights checksum and probe predictions."""
    batch = probe_batch(model, batch_size)
    outputs = predict_probe(model, batch)
    return Baseline(weights_sha256(model), batch, outputs, arrays_sha256(outputs))


def _model_info(model: keras.Model) -> dict:
    return {
        "name": model.name,
        "class": type(model).__name__,
        "input_shapes": [list(t.shape) for t in getattr(model, "inputs", []) or []],
        "parameters": int(sum(math.prod(v.shape) for v in model.weights)),
    }


def _entry(slot_or_unslotted, kind: str, trainable_ids: set[int], **extra) -> dict:
    variable = slot_or_unslotted.variable
    return {
        "path": slot_or_unslotted.path,
        "kind": kind,
        "layer_type": type(slot_or_unslotted.layer).__name__,
        "shape": list(variable.shape),
        "trainable": id(variable) in trainable_ids,
        **extra,
    }


def _selection_reason(slot: Slot, spec: RegularizationSpec) -> str | None:
    """Why ``slot`` is not targeted by ``spec``, or None when it is."""
    if slot.kind not in spec.kinds:
        if slot.kind == "bias":
            return "bias not requested (include_bias=False)"
        if slot.kind in ("gamma", "beta"):
            return "normalization weight not requested (include_norm=False)"
        return f"kind {slot.kind!r} is not among the targeted kinds {list(spec.kinds)}"
    # A governed slot (MHA projection) is decided by its governor: they share one config.
    path = slot.config_owner_path
    types = {type(slot.layer).__name__, type(slot.config_owner).__name__}
    if spec.layer_types and not types & set(spec.layer_types):
        return f"layer type {sorted(types)} not in layer_types {list(spec.layer_types)}"
    if spec.include and not any(re.search(p, path) for p in spec.include):
        return f"layer path {path!r} matches no include pattern"
    for pattern in spec.exclude:
        if re.search(pattern, path):
            return f"layer path {path!r} matches exclude pattern {pattern!r}"
    return None


def _check_patterns_match(spec: RegularizationSpec, layer_paths: list[str]) -> None:
    for name, patterns in (("include", spec.include), ("exclude", spec.exclude)):
        for pattern in patterns:
            if not any(re.search(pattern, path) for path in layer_paths):
                raise ValueError(
                    f"Invalid `{name}` pattern: it matches no layer. Expected a regex found in "
                    f"one of {len(layer_paths)} layer paths (e.g. {layer_paths[1:4]}). "
                    f"Received: {name}={pattern!r}"
                )


def _freeze(model: keras.Model, spec: RegularizationSpec) -> list[str]:
    """Apply the freeze policy; return the paths of the layers set to ``trainable=False``."""
    holders = [(p, layer) for p, layer, _ in iter_layers(model) if own_variables(layer)]
    frozen: list[str] = []
    count = 0
    if spec.freeze_until is not None:
        names = [layer.name for _, layer in holders]
        if spec.freeze_until not in names:
            close = [n for n in names if spec.freeze_until.lower() in n.lower()][:5]
            raise ValueError(
                "Invalid value for argument `freeze_until`. Expected the name of a layer with "
                f"weights (similar: {close}). Received: freeze_until={spec.freeze_until!r}"
            )
        count = names.index(spec.freeze_until)
    elif spec.freeze_fraction is not None:
        count = int(spec.freeze_fraction * len(holders))
    for path, layer in holders[:count]:
        layer.trainable = False
        frozen.append(path)
    if spec.freeze_batchnorm:
        for path, layer in holders[count:]:
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
                layer.trainable = False
                frozen.append(path)
    return frozen


def regularize(
    model: keras.Model, spec: RegularizationSpec, baseline: Baseline | None = None
) -> RegularizationReport:
    """Attach ``spec``'s regularizer to every targeted weight of ``model``, in place.

    Each weight gets ``penalty = l1 * sum(abs(w)) + l2 * sum(w**2)`` once, however often its
    layer is shared. Weights without a serializable regularizer slot (e.g. ConvNeXt's
    LayerScale) are listed in ``report.skipped`` with the reason; so are weights the spec
    does not target. Penalties on frozen weights are attached (they become live if the layer
    is unfrozen) but reported with ``trainable: false``: they do not reach the loss.

    Compile the model *after* this call: Keras ignores regularizers added after ``compile()``.

    Args:
        model: a built Keras model (Functional, Sequential, nested models included).
        spec: what to regularize and how to freeze.
        baseline: the fingerprint of ``model`` before any change; taken now when omitted.

    Returns:
        A report of every regularized and skipped weight; run ``verify`` on it.

    Raises:
        ValueError: unbuilt model, include/exclude pattern matching no layer, unknown
            ``freeze_until`` layer, or no weight selected.
    """
    started = time.perf_counter()
    slot_map = find_slots(model)
    if baseline is None:
        baseline = capture_baseline(model, spec.probe_batch_size)
    _check_patterns_match(spec, [p for p, _, _ in iter_layers(model)])
    targets, not_targeted = [], []
    for slot in slot_map.slots:
        reason = _selection_reason(slot, spec)
        (not_targeted if reason else targets).append((slot, reason))
    if not targets:
        raise ValueError(
            "No weight matched the regularization spec. Expected at least one of "
            f"{len(slot_map.slots)} regularizable weights to be selected. "
            f"Received: spec={spec.to_json()}"
        )
    targeted = {id(s.variable) for s, _ in targets}
    preexisting = [
        {
            "path": s.path,
            "regularizer": keras.regularizers.serialize(s.variable.regularizer),
            "replaced": id(s.variable) in targeted,
        }
        for s in slot_map.slots
        if s.variable.regularizer is not None
    ]
    frozen = _freeze(model, spec)  # validates freeze_until before anything is attached
    regularizer = spec.build_regularizer()
    for slot, _ in targets:
        slot.variable.regularizer = regularizer
        # The owner's attribute documents the weight; a governor's is what gets serialized.
        for layer in {id(x): x for x in (slot.layer, slot.config_owner)}.values():
            set_slot_attribute(layer, slot.attribute, regularizer)
    report_config = keras.regularizers.serialize(regularizer)
    trainable_ids = {id(v) for v in model.trainable_weights}
    report = RegularizationReport(
        spec=spec.to_dict(),
        regularizer=report_config,
        regularizer_summary=spec.regularizer_summary(),
        model=_model_info(model),
        regularized=[_entry(s, s.kind, trainable_ids) for s, _ in targets],
        skipped=[_entry(s, s.kind, trainable_ids, reason=r) for s, r in not_targeted]
        + [_entry(u, "unslotted", trainable_ids, reason=u.reason) for u in slot_map.unslotted],
        preexisting=preexisting,
        frozen_layers=frozen,
        baseline=baseline,
    )
    report.timings["regularize_s"] = round(time.perf_counter() - started, 6)
    return report

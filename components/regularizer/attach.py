"""Attach regularizers to a built Keras model in place, without rebuilding it.

Setting ``layer.kernel_regularizer`` on a built layer only changes its config; the penalty
lives on the variable (``variable.regularizer``). We set both, so the penalty is live now and
survives ``.keras`` save and reload.

>>> import keras
>>> from backbone_regularizer.components.regularizer import RegularizationSpec, regularize, verify
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

from backbone_regularizer.components.regularizer.fingerprint import (
    arrays_sha256,
    predict_probe,
    probe_batch,
)
from backbone_regularizer.components.regularizer.keras_file import (
    iter_layers,
    layer_keys,
    own_variables,
    weights_digest,
)
from backbone_regularizer.components.regularizer.penalties import needs_anchor
from backbone_regularizer.components.regularizer.plan import attach, get_frozen, set_plan
from backbone_regularizer.components.regularizer.report import Baseline, RegularizationReport
from backbone_regularizer.components.regularizer.slots import Slot, Unslotted, find_slots
from backbone_regularizer.components.regularizer.spec import RegularizationSpec


def capture_baseline(model: keras.Model, batch_size: int) -> Baseline:
    """Fingerprint the model before it is changed: weights checksum and probe predictions.

    The checksum is taken on a helper thread during the probe's forward pass; both only read
    the model, and both finish before this returns (before anything can change it).
    """
    batch = probe_batch(model, batch_size)
    with weights_digest(model) as digest:
        outputs = predict_probe(model, batch)
        sha256 = digest.result()
    return Baseline(sha256, batch, outputs, arrays_sha256(outputs))


def _model_info(model: keras.Model) -> dict:
    return {
        "name": model.name,
        "class": type(model).__name__,
        "input_shapes": [list(t.shape) for t in getattr(model, "inputs", []) or []],
        "parameters": int(sum(math.prod(v.shape) for v in model.weights)),
    }


def _entry(weight: Slot | Unslotted, trainable_ids: set[int], **extra) -> dict:
    variable = weight.variable
    return {
        "path": weight.path,
        "key": weight.key,
        "kind": weight.kind,
        "layer_type": type(weight.layer).__name__,
        "shape": list(variable.shape),
        "trainable": id(variable) in trainable_ids,
        "slot": weight.attribute if isinstance(weight, Slot) else None,
        **extra,
    }


def _kind_reason(weight: Slot | Unslotted, spec: RegularizationSpec) -> str | None:
    if weight.kind in spec.kinds:
        return None
    if weight.kind == "bias":
        return "bias not requested (include_bias=False)"
    if weight.kind in ("gamma", "beta"):
        return "normalization weight not requested (include_norm=False)"
    return f"kind {weight.kind!r} is not among the targeted kinds {list(spec.kinds)}"


def _selection_reason(weight: Slot | Unslotted, spec: RegularizationSpec) -> str | None:
    """Why ``weight`` is not targeted by ``spec``, or None when it is."""
    reason = _kind_reason(weight, spec)
    if isinstance(weight, Unslotted) and reason:
        return f"{reason}; {weight.reason} (if selected, the plan carries its penalty)"
    if reason:
        return reason
    if isinstance(weight, Unslotted):
        path, types = weight.path.rsplit("/", 1)[0], {type(weight.layer).__name__}
    else:
        # A governed slot (MHA projection) is decided by its governor: they share one config.
        path = weight.config_owner_path
        types = {type(weight.layer).__name__, type(weight.config_owner).__name__}
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

    Each weight gets ``penalty = l1 * sum(abs(w)) + l2 * sum(w**2)`` (or L2-SP's ``alpha / 2 *
    sum((w - w0)**2)``) once, however often its layer is shared. The penalty is set on the
    variable, on the layer's regularizer attribute where it has one, and in the model's
    regularization plan (``plan.py``), which ``save_regularized`` writes with the model where
    the layer configs cannot carry it: weights without an attribute (ConvNeXt's LayerScale, a
    ViT class token, selected by their variable name as kind), models that rebuild their layers
    on load (KerasHub) and L2-SP anchors. Weights the spec does not target are listed in
    ``report.skipped`` with the reason. Penalties on frozen weights are attached (they become
    live if the layer is unfrozen) but reported with ``trainable: false``: they do not reach the
    loss.

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
    weights = [*slot_map.slots, *slot_map.unslotted]
    if baseline is None:
        baseline = capture_baseline(model, spec.probe_batch_size)
    _check_patterns_match(spec, [p for p, _, _ in iter_layers(model)])
    targets, not_targeted = [], []
    for weight in weights:
        reason = _selection_reason(weight, spec)
        (not_targeted if reason else targets).append((weight, reason))
    if not targets:
        raise ValueError(
            "No weight matched the regularization spec. Expected at least one of "
            f"{len(weights)} trainable weights to be selected. "
            f"Received: spec={spec.to_json()}"
        )
    targeted = {id(w.variable) for w, _ in targets}
    preexisting = [
        {
            "path": w.path,
            "key": w.key,
            "regularizer": keras.regularizers.serialize(w.variable.regularizer),
            "replaced": id(w.variable) in targeted,
        }
        for w in weights
        if w.variable.regularizer is not None
    ]
    frozen = _freeze(model, spec)  # validates freeze_until before anything is attached
    regularizer = spec.build_regularizer()
    anchors = {}
    for weight, _ in targets:
        if needs_anchor(regularizer):
            # One L2-SP instance per weight, anchored to the weight's value now: the weights
            # whose checksum the baseline recorded (check `weights_unchanged` proves it).
            regularizer = spec.build_regularizer()
            regularizer.anchor_to(weight.variable.value)
            anchors[weight.key] = regularizer.anchor_numpy()
        attach(weight, regularizer)
    baseline.anchors = anchors
    # Every live penalty and the frozen layers, by stable key: what the file must carry.
    keys = layer_keys(model)
    by_path = {path: keys[id(layer)] for path, layer, _ in iter_layers(model)}
    frozen_keys = get_frozen(model)
    frozen_keys += [by_path[p] for p in frozen if by_path[p] not in frozen_keys]
    set_plan(
        model,
        {
            w.key: keras.regularizers.serialize(w.variable.regularizer)
            for w in weights
            if w.variable.regularizer is not None
        },
        frozen_keys,
    )
    report_config = keras.regularizers.serialize(regularizer)
    trainable_ids = {id(v) for v in model.trainable_weights}
    report = RegularizationReport(
        spec=spec.to_dict(),
        regularizer=report_config,
        regularizer_summary=spec.regularizer_summary(),
        model=_model_info(model),
        regularized=[_entry(w, trainable_ids) for w, _ in targets],
        skipped=[_entry(w, trainable_ids, reason=r) for w, r in not_targeted],
        preexisting=preexisting,
        frozen_layers=frozen,
        baseline=baseline,
        frozen_keys=frozen_keys,
    )
    report.timings["regularize_s"] = round(time.perf_counter() - started, 6)
    return report

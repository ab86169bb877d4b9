"""Read-only audit: which weights of a model carry a regularizer, which kernel-like ones do not."""

from __future__ import annotations

import keras

from backbone_regularizer.components.regularizer.plan import get_plan
from backbone_regularizer.components.regularizer.slots import find_slots
from backbone_regularizer.components.regularizer.spec import DEFAULT_KINDS


def describe_regularizer(regularizer) -> str | None:
    if regularizer is None:
        return None
    config = keras.regularizers.serialize(regularizer)
    args = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted((config.get("config") or {}).items())
    )
    return f"{config['class_name']}({args})"


def audit(model: keras.Model) -> dict:
    """List every trainable-created weight with its live regularizer (or None). Changes nothing.

    A weight counts as regularized only when the penalty is live on the variable *and* the
    config that serializes it says so (for a weight without a regularizer attribute: the
    model's saved regularization plan); ``config_only`` lists weights where just the attribute
    was set (the silent no-op this project exists to fix).

    Returns:
        ``{"weights": [...], "summary": {"weights_total", "kernel_like", "regularized",
        "missed": [paths of kernel-like weights without a live regularizer], "config_only"}}``
    """
    slot_map = find_slots(model)
    rows, missed, config_only = [], [], []
    for slot in slot_map.slots:
        live = describe_regularizer(slot.variable.regularizer)
        in_config = slot.config_owner.get_config().get(slot.attribute) is not None
        rows.append(
            {
                "path": slot.path,
                "kind": slot.kind,
                "layer_type": type(slot.layer).__name__,
                "shape": list(slot.variable.shape),
                "regularizer": live if in_config else None,
                "kernel_like": slot.kind in DEFAULT_KINDS,
            }
        )
        if in_config and live is None:
            config_only.append(slot.path)
        if slot.kind in DEFAULT_KINDS and not (live and in_config):
            missed.append(slot.path)
    planned = get_plan(model)
    for item in slot_map.unslotted:
        # No layer attribute: the penalty counts when it is live and the saved plan carries it.
        live = describe_regularizer(item.variable.regularizer)
        rows.append(
            {
                "path": item.path,
                "kind": "unslotted",
                "layer_type": type(item.layer).__name__,
                "shape": list(item.variable.shape),
                "regularizer": live if item.key in planned else None,
                "kernel_like": False,
            }
        )
    return {
        "weights": rows,
        "summary": {
            "weights_total": len(rows),
            "kernel_like": sum(r["kernel_like"] for r in rows),
            "regularized": sum(r["regularizer"] is not None for r in rows),
            "missed": missed,
            "config_only": config_only,
        },
    }

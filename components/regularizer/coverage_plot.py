"""Pictures of an audit: which weight kinds are regularized, and how much each weight costs.

Plain Keras and matplotlib (Agg, no pyplot state): usable on any ``.keras`` model, no TFX.

    model = keras.saving.load_model("model.keras")
    write_audit_plot(model, "coverage.png")

Left panel: per weight kind, how many weights carry a regularizer, how many kernel-like ones
(kernel, depthwise, pointwise, recurrent, embeddings) were *missed*, and how many others were
left alone by design (bias, gamma, beta, weights without a regularizer attribute). Right panel:
the penalty of every kernel-like weight in model order, ``penalty = l1 * sum(|w|) +
l2 * sum(w**2)`` from the variable's live regularizer; missed weights are red marks at zero, so
the 2019 method's gap (every depthwise kernel of MobileNetV2) shows as a comb of red ticks.
"""

from __future__ import annotations

import os

import keras

from backbone_regularizer.components.regularizer.audit import audit
from backbone_regularizer.components.regularizer.slots import find_slots
from backbone_regularizer.components.regularizer.spec import DEFAULT_KINDS

REGULARIZED = "regularized"
MISSED = "missed"
NOT_TARGETED = "not targeted"
_COLORS = {REGULARIZED: "#2e7d32", MISSED: "#c62828", NOT_TARGETED: "#b0b0b0"}


def _check_audit(audit_result) -> list[dict]:
    rows = audit_result.get("weights") if isinstance(audit_result, dict) else None
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and {"path", "kind", "regularizer", "kernel_like"} <= set(r)
        for r in rows
    ):
        keys = sorted(audit_result)[:8] if isinstance(audit_result, dict) else None
        raise ValueError(
            "Expected an audit result: the dict "
            "`backbone_regularizer.components.regularizer.audit.audit(model)` "
            "returns, with a `weights` list of rows. Received: audit_result="
            f"{type(audit_result).__name__} with keys {keys}"
        )
    return rows


def _layer_name(weight_path: str) -> str:
    """``model/block_1_depthwise/kernel`` -> ``block_1_depthwise``."""
    parts = weight_path.split("/")
    return parts[-2] if len(parts) > 1 else parts[0]


def coverage_by_kind(audit_result: dict) -> dict[str, dict[str, int]]:
    """Per weight kind: ``{"regularized": n, "missed": n, "not targeted": n}``.

    ``missed`` counts kernel-like weights without a regularizer (the audit's ``missed``);
    ``not targeted`` counts other weights without one (bias, norms, unslotted).

    >>> coverage_by_kind(audit(add_regularization_2019(mobilenet_v2)))["depthwise"]
    {'regularized': 0, 'missed': 17, 'not targeted': 0}

    Raises:
        ValueError: ``audit_result`` is not what ``audit()`` returns.
    """
    counts: dict[str, dict[str, int]] = {}
    for row in _check_audit(audit_result):
        if row["regularizer"] is not None:
            status = REGULARIZED
        elif row["kernel_like"]:
            status = MISSED
        else:
            status = NOT_TARGETED
        counts.setdefault(row["kind"], dict.fromkeys((REGULARIZED, MISSED, NOT_TARGETED), 0))
        counts[row["kind"]][status] += 1
    order = [k for k in DEFAULT_KINDS if k in counts] + sorted(set(counts) - set(DEFAULT_KINDS))
    return {kind: counts[kind] for kind in order}


def penalties_by_weight(model: keras.Model) -> dict[str, float]:
    """Weight path -> the penalty its live regularizer adds, ``regularizer(variable)``.

    Only weights whose variable carries a regularizer are listed (frozen ones too, although
    Keras leaves those out of ``model.losses``). Paths match ``audit()`` rows.

    Raises:
        ValueError: the model is not built (see ``find_slots``).
    """
    return {
        slot.path: float(keras.ops.convert_to_numpy(slot.variable.regularizer(slot.variable)))
        for slot in find_slots(model).slots
        if slot.variable.regularizer is not None
    }


def plot_coverage(
    audit_result: dict, path: str | os.PathLike, penalties: dict[str, float] | None = None
) -> None:
    """Write a PNG: (a) coverage by weight kind, (b) penalty per kernel-like weight.

    Args:
        audit_result: what ``audit(model)`` returns.
        path: local PNG file to write (its folder must exist).
        penalties: weight path -> penalty (``penalties_by_weight(model)``); without it panel
            (b) shows regularized weights at zero height, missed ones still in red.

    Raises:
        ValueError: ``audit_result`` is not an audit result.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = coverage_by_kind(audit_result)
    rows = [r for r in audit_result["weights"] if r["kernel_like"]]
    penalties = penalties or {}
    summary = audit_result.get("summary", {})

    fig = Figure(figsize=(13, 4.8))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2.6]})

    kinds = list(counts)
    offsets = [0] * len(kinds)
    for status in (REGULARIZED, MISSED, NOT_TARGETED):
        values = [counts[k][status] for k in kinds]
        bars = left.barh(kinds, values, left=offsets, color=_COLORS[status], label=status)
        left.bar_label(bars, labels=[str(v) if v else "" for v in values], label_type="center")
        offsets = [o + v for o, v in zip(offsets, values, strict=True)]
    left.invert_yaxis()
    left.set_xlabel("weights")
    left.set_title("(a) regularization coverage by weight kind")
    left.legend(loc="lower right", fontsize=8)

    heights = [penalties.get(r["path"], 0.0) for r in rows]
    colors = [_COLORS[REGULARIZED] if r["regularizer"] else _COLORS[MISSED] for r in rows]
    positions = range(len(rows))
    right.bar(positions, heights, color=colors, width=0.8)
    missed = [i for i, r in enumerate(rows) if r["regularizer"] is None]
    for number, index in enumerate(missed):
        # A full-height band: a missed weight has no bar to see, so mark its place.
        right.axvspan(
            index - 0.45,
            index + 0.45,
            color=_COLORS[MISSED],
            alpha=0.3,
            label=f"missed ({len(missed)})" if number == 0 else None,
        )
    if missed:
        right.legend(loc="upper left", fontsize=8)
    step = max(1, len(rows) // 40)
    right.set_xticks(list(positions)[::step])
    right.set_xticklabels([_layer_name(r["path"]) for r in rows][::step], rotation=80, fontsize=6)
    right.set_xlim(-0.6, max(len(rows), 1) - 0.4)
    right.set_ylabel("penalty at current weights")
    right.set_title("(b) penalty by layer (kernel-like weights, model order)")
    fig.suptitle(
        f"{summary.get('regularized', '?')} of {summary.get('weights_total', '?')} weights "
        f"regularized; {len(summary.get('missed', missed))} of "
        f"{summary.get('kernel_like', len(rows))} kernel-like weights missed; "
        f"total penalty {sum(penalties.values()):.4g}"
    )
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)


def write_audit_plot(model: keras.Model, path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Audit ``model``, compute its penalties and write the coverage PNG to ``path``.

    Returns:
        The per-kind counts drawn in panel (a) (see ``coverage_by_kind``).
    """
    result = audit(model)
    plot_coverage(result, path, penalties_by_weight(model))
    return coverage_by_kind(result)

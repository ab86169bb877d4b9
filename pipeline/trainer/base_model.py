"""Load the regularized base model handed to the Trainer, and refuse one that is not it."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence

import keras
import numpy as np
from tfx.dsl.io import fileio

from backbone_regularizer.components.model_artifact import REPORT_FILE, fetch_model, report_uri
from backbone_regularizer.components.regularizer.keras_file import load_keras_model, weights_sha256
from backbone_regularizer.components.regularizer.penalties import needs_anchor
from backbone_regularizer.components.regularizer.slots import find_slots


class BaseModelRejected(ValueError):
    """The base model is not the verified, regularized model its artifact claims."""


def load_base_model(fn_args, custom_modules: Sequence[str] = ()) -> tuple[keras.Model, dict]:
    """The regularized backbone of a Trainer's ``run_fn``, checked: ``load_regularized_base``
    on ``fn_args.base_model``.

    Wire the Trainer with ``Trainer(base_model=regularizer.outputs["model"], ...)``; call this
    inside ``strategy.scope()`` when training with a distribution strategy.

    >>> def run_fn(fn_args):  # doctest: +SKIP
    ...     base, report = load_base_model(fn_args)
    ...     print(len(base.losses), report["regularizer_summary"])

    Raises:
        BaseModelRejected: see ``load_regularized_base``.
    """
    return load_regularized_base(getattr(fn_args, "base_model", None), custom_modules)


def load_regularized_base(
    serving_dir: str, custom_modules: Sequence[str] = ()
) -> tuple[keras.Model, dict]:
    """Load ``<serving_dir>/model.keras`` and check it against the regularization report.

    ``serving_dir`` is what TFX passes as ``fn_args.base_model`` (``<uri>/Format-Serving``);
    the report sits at ``<uri>/regularization_report.json`` (``report_uri``). The model is
    loaded with the same ``safe_mode`` the regularizer used (an opt-out there is recorded in
    the report), after importing ``custom_modules`` (and ``keras_hub`` when the file holds
    KerasHub classes). Both file formats load (the report's ``"file"`` says which): a plain
    Keras file, and one wrapped with the regularization plan.

    Raises:
        BaseModelRejected: no report, no penalty in ``model.losses``, or weights whose
            SHA-256 differs from the one the regularizer recorded (tampered after it).
        FileNotFoundError: the report's artifact holds no model file.
    """
    if not serving_dir:
        raise BaseModelRejected(
            "Expected a base model (Trainer(base_model=regularizer.outputs['model'])). "
            "Received: none"
        )
    report_path = report_uri(serving_dir)
    if not fileio.exists(report_path):
        raise BaseModelRejected(
            f"Expected a BackboneRegularizer output with {REPORT_FILE}. "
            f"Received: no report at {report_path!r}"
        )
    with fileio.open(report_path) as handle:
        report = json.loads(handle.read())
    safe_mode = bool(report["validation"].get("source_loaded_with_safe_mode", True))
    with tempfile.TemporaryDirectory(prefix="base-model-") as tmp:
        local = fetch_model(serving_dir, tmp, role="base model")
        model = load_keras_model(local, safe_mode=safe_mode, custom_modules=custom_modules)
    weights = find_slots(model).by_path().values()
    carrying = sum(w.variable.regularizer is not None for w in weights)
    if carrying < report["counts"]["regularized"]:
        raise BaseModelRejected(
            f"Expected {report['counts']['regularized']} regularized weights (per the report). "
            f"Received: {carrying}; regularizers were stripped from this model."
        )
    if not model.losses and report["counts"]["regularized_trainable"] > 0:
        raise BaseModelRejected(
            "Expected regularization penalties in model.losses "
            f"({report['counts']['regularized_trainable']} per the report). Received: none; "
            "the regularizers were stripped from this model."
        )
    recorded = report["checksums"]["weights_sha256"]
    actual = weights_sha256(model)
    if actual != recorded:
        raise BaseModelRejected(
            f"Expected base model weights with SHA-256 {recorded} (recorded by the "
            f"BackboneRegularizer). Received: {actual}; the weights changed after validation."
        )
    # L2-SP anchors were taken from the loaded weights (plan.py); the checksum above proves
    # those are the recorded ones, so every L2-SP penalty must start at exactly 0.
    unanchored = [
        w.path
        for w in weights
        if needs_anchor(w.variable.regularizer)
        and not (
            w.variable.regularizer.anchored
            and np.array_equal(w.variable.regularizer.anchor_numpy(), w.variable.numpy())
        )
    ]
    if unanchored:
        raise BaseModelRejected(
            "Expected every L2-SP penalty anchored to the recorded weights. "
            f"Received: {len(unanchored)} weights without that anchor, e.g. {unanchored[:3]}"
        )
    return model, report

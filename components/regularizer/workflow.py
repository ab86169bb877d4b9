"""The whole regularization of a ``.keras`` file: load, regularize, verify, save, reload, verify.

Local paths only (plain Keras). The TFX executor copies artifacts in and out around this.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from backbone_regularizer.components.regularizer.archive import RegularizedArchive
from backbone_regularizer.components.regularizer.attach import capture_baseline, regularize
from backbone_regularizer.components.regularizer.checks import VerificationError, verify
from backbone_regularizer.components.regularizer.file_format import wrap_file
from backbone_regularizer.components.regularizer.keras_file import load_keras_model
from backbone_regularizer.components.regularizer.plan import LAYER_CONFIG, carried_by
from backbone_regularizer.components.regularizer.report import RegularizationReport, versions
from backbone_regularizer.components.regularizer.spec import RegularizationSpec

log = logging.getLogger(__name__)

# Checks whose failure on a plain Keras file means a layer config did not carry what it was
# expected to (the envelope then carries it); the others fail for any format.
_CARRYING_CHECKS = ("coverage", "loss_terms")


def regularize_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    spec: RegularizationSpec,
    safe_mode: bool = True,
    custom_modules: Sequence[str] = (),
) -> RegularizationReport:
    """Regularize ``src`` into ``dst`` (a ``.keras`` path) and verify the written file.

    ``dst`` holds the model's config and ``src``'s weights copied unchanged (``archive.py``; a
    compiled source is re-saved whole with ``save_regularized``). It is a plain Keras file
    when the layer configs carry every penalty (Keras' own L1/L2 on a Functional or Sequential
    model): ``keras.saving.load_model`` loads it anywhere. Otherwise (KerasHub backbones,
    weights without a regularizer attribute, L2-SP) the config is wrapped with the
    regularization plan (``plan.py``): load it in a process that imported
    ``backbone_regularizer.components.regularizer``. ``report.file`` says which, and why.
    ``dst`` and the report (``report_path_for(dst)``) appear only when every check passed,
    both on the model in memory and on the written file reloaded with ``load_model``: that
    file is what the Trainer sees. Both loads use ``safe_mode``; ``safe_mode=False`` is an
    explicit opt-out for trusted files with Lambda layers, recorded in the report.
    ``custom_modules`` are imported before loading (see ``load_keras_model``).

    Raises:
        ValueError, FileNotFoundError: bad input (see ``load_keras_model``, ``regularize``).
        VerificationError: a check failed; nothing is written.
    """
    started = time.perf_counter()
    dst = Path(dst)
    if dst.suffix != ".keras":
        raise ValueError(f"Expected a destination ending in .keras. Received: {str(dst)!r}")
    created = [d for d in (dst.parent, *dst.parent.parents) if not d.exists()]
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _regularize_staged(src, dst, spec, safe_mode, custom_modules, started)
    except BaseException:
        for folder in created:  # deepest first; a failed run leaves no empty folders behind
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _regularize_staged(
    src: str | os.PathLike,
    dst: Path,
    spec: RegularizationSpec,
    safe_mode: bool,
    custom_modules: Sequence[str],
    started: float,
) -> RegularizationReport:
    """``regularize_file`` once ``dst.parent`` exists: write a staged file, verify, rename."""
    timings: dict[str, float] = {}
    # Write next to dst and rename, so a killed run never leaves a half-written dst.
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".regularize-") as tmp:
        staged = Path(tmp) / dst.name
        # Copies src's weights into the staged file on a helper thread while src is loaded
        # and fingerprinted (a src that cannot be loaded is reported by the load below).
        with RegularizedArchive(src, staged) as archive:
            log.info("loading %s (safe_mode=%s)", src, safe_mode)
            model = load_keras_model(src, safe_mode=safe_mode, custom_modules=custom_modules)
            timings["load_s"] = time.perf_counter() - started
            mark = time.perf_counter()
            baseline = capture_baseline(model, spec.probe_batch_size)
            report = regularize(model, spec, baseline)
            log.info(
                "regularized %d weights (%d skipped) with %s",
                len(report.regularized),
                len(report.skipped),
                report.regularizer_summary,
            )
            # Checks 1-3 now, before writing the config; all five on the file the Trainer
            # will load.
            in_memory = verify(model, report, fingerprint=False)
            timings["regularize_verify_s"] = time.perf_counter() - mark
            mark = time.perf_counter()
            written = archive.finish(model)
            timings["save_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        log.info("reloading %s (%s) to verify what the Trainer will see", dst.name, written.name)
        reloaded = load_keras_model(staged, safe_mode=safe_mode, custom_modules=custom_modules)
        try:
            on_disk = verify(reloaded, report)
        except VerificationError as err:
            if written.envelope or err.check not in _CARRYING_CHECKS:
                raise
            log.info(
                "the plain file lost what its layer configs should carry (%s): writing the plan",
                err,
            )
            why = (f"the layer configs did not carry what was expected on reload: {err}",)
            written = wrap_file(model, staged, why)
            reloaded = load_keras_model(staged, safe_mode=safe_mode, custom_modules=custom_modules)
            on_disk = verify(reloaded, report)
        timings["reload_verify_s"] = time.perf_counter() - mark
        # A verified plain file: its layer configs carried every penalty.
        carried = (
            carried_by(reloaded)
            if written.envelope
            else {w["key"]: LAYER_CONFIG for w in report.regularized}
        )
        report.record_validation(in_memory, on_disk, safe_mode, carried)
        report.file = written.to_dict()
        report.versions = versions()
        timings["total_s"] = time.perf_counter() - started
        report.timings.update({k: round(v, 6) for k, v in timings.items()})
        staged_report = Path(tmp) / report_path_for(dst).name
        staged_report.write_text(report.to_json())
        os.replace(staged, dst)
        os.replace(staged_report, report_path_for(dst))
    return report


def report_path_for(dst: str | os.PathLike) -> Path:
    """Where ``regularize_file`` writes the report of ``dst``: ``<stem>.report.json`` beside it."""
    dst = Path(dst)
    return dst.with_name(f"{dst.stem}.report.json")

"""The whole regularization of a ``.keras`` file: load, regularize, verify, save, reload, verify.

Local paths only (plain Keras). The TFX executor copies artifacts in and out around this.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import keras

from backbone_regularizer.components.regularizer.archive import RegularizedArchive
from backbone_regularizer.components.regularizer.attach import capture_baseline, regularize
from backbone_regularizer.components.regularizer.checks import verify
from backbone_regularizer.components.regularizer.custom_modules import import_for_model
from backbone_regularizer.components.regularizer.plan import carried_by
from backbone_regularizer.components.regularizer.report import RegularizationReport, versions
from backbone_regularizer.components.regularizer.spec import RegularizationSpec

log = logging.getLogger(__name__)

REPORT_NAME = "regularization_report.json"


def load_keras_model(
    path: str | os.PathLike, safe_mode: bool = True, custom_modules: Sequence[str] = ()
) -> keras.Model:
    """Load a ``.keras`` file with a clear error for every way it can be wrong.

    ``custom_modules`` are imported first (they register custom classes), then the trusted
    modules the file records (``keras_hub``): see ``custom_modules.import_for_model``.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a directory (e.g. a SavedModel), not a ``.keras`` zip, a corrupt archive,
            a Lambda layer under ``safe_mode``, an unregistered custom class, or a module in
            ``custom_modules`` (or one the file needs) that fails to import.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Expected a .keras model file. Received: {str(path)!r} (missing)")
    if path.is_dir():
        hint = (
            " It looks like a TF SavedModel; Keras 3 cannot load those: save the model with "
            "`model.save('model.keras')`."
            if (path / "saved_model.pb").exists()
            else ""
        )
        raise ValueError(f"Expected a .keras model file. Received: directory {str(path)!r}.{hint}")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ValueError(
            "Expected a Keras v3 `.keras` archive (a zip file). "
            f"Received: {str(path)!r}, which is not one (corrupt or another format)."
        )
    import_for_model(path, custom_modules)
    try:
        model = keras.saving.load_model(path, safe_mode=safe_mode, compile=False)
    except Exception as err:  # Keras raises many types here; name the file and the cause.
        text = str(err)
        if "safe_mode" in text or "Lambda" in text:
            raise ValueError(
                f"Refusing to load {str(path)!r} with safe_mode=True: it contains a Lambda "
                "layer (arbitrary code). Re-run with safe mode explicitly disabled only if "
                "you trust the file."
            ) from err
        raise ValueError(f"Could not load Keras model {str(path)!r}: {text}") from err
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected a keras.Model in {str(path)!r}. Received: {type(model).__name__}"
        )
    return model


def regularize_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    spec: RegularizationSpec,
    safe_mode: bool = True,
    custom_modules: Sequence[str] = (),
) -> RegularizationReport:
    """Regularize ``src`` into ``dst`` (a ``.keras`` path) and verify the written file.

    ``dst`` holds the model's config with its regularization plan (``plan.py``) and ``src``'s
    weights copied unchanged (``archive.py``; a compiled source is re-saved whole with
    ``save_regularized``). Load it with ``keras.saving.load_model`` in a process that imported
    ``backbone_regularizer.components.regularizer``.
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
            archive.finish(model)
            timings["save_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        log.info("reloading %s to verify what the Trainer will see", dst.name)
        reloaded = load_keras_model(staged, safe_mode=safe_mode, custom_modules=custom_modules)
        on_disk = verify(reloaded, report)
        timings["reload_verify_s"] = time.perf_counter() - mark
        report.record_validation(in_memory, on_disk, safe_mode, carried_by(reloaded))
        report.versions = versions()
        timings["total_s"] = time.perf_counter() - started
        report.timings.update({k: round(v, 6) for k, v in timings.items()})
        staged_report = Path(tmp) / REPORT_NAME
        staged_report.write_text(report.to_json())
        os.replace(staged, dst)
        os.replace(staged_report, report_path_for(dst))
    return report


def report_path_for(dst: str | os.PathLike) -> Path:
    """Where ``regularize_file`` writes the report of ``dst``: ``<stem>.report.json`` beside it."""
    dst = Path(dst)
    return dst.with_name(f"{dst.stem}.report.json")

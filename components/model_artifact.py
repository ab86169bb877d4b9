"""The Model artifact our components write and read: its files, where they lie, publish, fetch.

A ``standard_artifacts.Model`` written by BackboneLoader or BackboneRegularizer holds::

    <uri>/Format-Serving/model.keras     the Keras model (TFX hands the Trainer
                                         fn_args.base_model = <uri>/Format-Serving)
    <uri>/regularization_report.json     BackboneRegularizer only: what was attached,
                                         skipped and verified

``publish`` is the one place an executor writes these files into an artifact, ``fetch_model``
the one place a model file is copied out of one; both go through ``tfx.dsl.io.fileio``, so the
URI may be local, ``gs://`` or ``s3://``.

A step retried by the orchestrator (Kubeflow retries a failed task with the same output URIs,
kubeflow/pipelines#13175) finds what its killed attempt left there: a half-copied model, a
report, a staging folder. ``publish_files`` (under ``publish``) stages, then replaces: every
file is first copied into ``<folder>/.staging/``, then everything else in the folder is
removed and the staged files are moved into place, the main file last. An attempt killed at
any point leaves an incomplete folder, which the next attempt replaces whole; the files of
two attempts never stand side by side.

>>> serving = serving_dir("gs://bucket/BackboneRegularizer/model/7")
>>> model_uri(serving), report_uri(serving)  # doctest: +SKIP
('gs://bucket/BackboneRegularizer/model/7/Format-Serving/model.keras',
 'gs://bucket/BackboneRegularizer/model/7/regularization_report.json')
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from tfx.dsl.io import fileio
from tfx.utils import path_utils

MODEL_FILE = "model.keras"
REPORT_FILE = "regularization_report.json"
# The Trainer's Model artifact: a SavedModel (what TFMA, the Pusher and TF Serving read).
SAVED_MODEL_FILE = "saved_model.pb"
# Where publish_files copies the files before replacing the folder's contents. Its presence
# means an attempt is publishing (or was killed while publishing).
STAGING_DIR = ".staging"
# TFX's name for the folder of a servable model inside a Model artifact: "Format-Serving".
SERVING_FOLDER = os.path.basename(path_utils.serving_model_dir(""))


def serving_dir(artifact_uri: str) -> str:
    """``<artifact_uri>/Format-Serving``: the folder holding the model, what TFX passes to a
    Trainer's ``run_fn`` as ``fn_args.base_model``."""
    return path_utils.serving_model_dir(artifact_uri)


def model_uri(serving: str) -> str:
    """The model file in a ``Format-Serving`` folder: ``<serving>/model.keras``."""
    return os.path.join(serving, MODEL_FILE)


def report_uri(serving: str) -> str:
    """Where the regularization report of a base model lies: ``fn_args.base_model`` is
    ``<artifact uri>/Format-Serving``, the report ``<artifact uri>/regularization_report.json``."""
    return os.path.join(os.path.dirname(serving.rstrip("/")), REPORT_FILE)


def publish(
    artifact_uri: str, model: str | os.PathLike, report: str | os.PathLike | None = None
) -> None:
    """Write a Model artifact from local files: ``model`` (a ``.keras`` file) as
    ``Format-Serving/model.keras`` and, for BackboneRegularizer, ``report`` as
    ``regularization_report.json``; whatever else the URI held is removed (``publish_files``).

    The single place where our executors write an artifact's files: call it once, after every
    check passed, with everything the artifact holds (what a retried step on the same URI
    must leave behind, and what a record of the finished artifact would describe). The
    artifact's ``provenance.json`` is written after the executor's ``Do`` returns, by
    ``provenance_step.recorded``: once the files are published and the properties set.
    """
    files = {os.path.join(SERVING_FOLDER, MODEL_FILE): model}
    if report is not None:
        files[REPORT_FILE] = report
    publish_files(artifact_uri, files, last=os.path.join(SERVING_FOLDER, MODEL_FILE))


def publish_folder(folder: str, source: str | os.PathLike, last: str | None = None) -> None:
    """Make ``folder`` hold exactly the files and subfolders (empty ones too, such as a
    SavedModel's ``assets``) under ``source`` (a local or store folder), staged then
    replaced (``publish_files``); ``last``: the file moved in last."""
    source = os.fspath(source).rstrip("/")
    files, folders = {}, []
    for parent, subfolders, names in fileio.walk(source):
        folders += [os.path.relpath(os.path.join(parent, name), source) for name in subfolders]
        for name in names:
            path = os.path.join(parent, name)
            files[os.path.relpath(path, source)] = path
    if not files:
        raise FileNotFoundError(f"Expected files to publish. Received: {source!r} is empty")
    publish_files(folder, files, last=last, folders=folders)


def publish_files(
    folder: str,
    files: Mapping[str, str | os.PathLike],
    last: str | None = None,
    folders: Sequence[str] = (),
) -> None:
    """Make ``folder`` hold exactly ``files`` (path relative to ``folder`` -> source file):
    stage, then replace.

    1. Copy every file into ``<folder>/.staging/`` (a staging folder left by a killed attempt
       is removed first). A source may be local or in a store (``fileio.copy``).
    2. Remove everything else in ``folder``: the files of an earlier attempt (a half-copied
       model, a stale report, temp folders).
    3. Create ``folders`` (paths relative to ``folder``: empty ones some formats have), move
       the staged files into place, deepest first and ``last`` at the very end (the file a
       reader looks for, e.g. ``saved_model.pb``), then remove the staging folder.

    A process killed in 1 leaves the old files and a staging folder; in 2 or 3, part of the
    new files and a staging folder. Either way the next attempt's step 1-3 replace them all.

    Raises:
        ValueError: a path in ``files`` or ``folders`` leaves ``folder`` or is inside the
            staging folder.
    """
    staging = os.path.join(folder, STAGING_DIR)
    for relative in [*files, *folders]:
        parts = os.path.normpath(relative).split(os.sep)
        if os.path.isabs(relative) or parts[0] in ("..", STAGING_DIR, "."):
            raise ValueError(f"Expected paths inside the artifact folder. Received: {relative!r}")
    if fileio.exists(staging):
        fileio.rmtree(staging)
    for relative, source in files.items():
        target = os.path.join(staging, relative)
        fileio.makedirs(os.path.dirname(target))
        fileio.copy(os.fspath(source), target, overwrite=True)
    for name in fileio.listdir(folder):
        name = name.rstrip("/")
        if name == STAGING_DIR:
            continue
        path = os.path.join(folder, name)
        if fileio.isdir(path):
            fileio.rmtree(path)
        else:
            fileio.remove(path)
    for relative in folders:  # empty ones are part of some formats (a SavedModel's assets)
        fileio.makedirs(os.path.join(folder, relative))
    order = sorted(files, key=lambda p: (p == last, -p.count("/"), p))
    for relative in order:
        target = os.path.join(folder, relative)
        fileio.makedirs(os.path.dirname(target))
        fileio.rename(os.path.join(staging, relative), target, overwrite=True)
    # An object store (s3://, gs://) has no folders: the staging "folder" is gone with its
    # last object.
    if fileio.exists(staging):
        fileio.rmtree(staging)


def fetch_model(serving: str, local_dir: str | os.PathLike, role: str = "model") -> str:
    """Copy ``<serving>/model.keras`` out of an artifact into ``local_dir``; return the local
    path (Keras loads local files only).

    Args:
        serving: the artifact's ``Format-Serving`` folder (``serving_dir(uri)``, or
            ``fn_args.base_model``).
        local_dir: an existing local folder, e.g. a ``tempfile.TemporaryDirectory``.
        role: what the artifact is, for the error message ("backbone", "base model").

    Raises:
        FileNotFoundError: the artifact holds no model file.
    """
    source = model_uri(serving)
    if not fileio.exists(source):
        raise FileNotFoundError(
            f"Expected the {role} artifact to hold {MODEL_FILE} under "
            f"{os.path.basename(serving.rstrip('/'))}. Received: no file at {source!r}"
        )
    local = os.path.join(local_dir, MODEL_FILE)
    fileio.copy(source, local, overwrite=True)
    return local

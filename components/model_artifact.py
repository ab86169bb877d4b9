"""The Model artifact our components write and read: its files, where they lie, publish, fetch.

A ``standard_artifacts.Model`` written by BackboneLoader or BackboneRegularizer holds::

    <uri>/Format-Serving/model.keras     the Keras model (TFX hands the Trainer
                                         fn_args.base_model = <uri>/Format-Serving)
    <uri>/regularization_report.json     BackboneRegularizer only: what was attached,
                                         skipped and verified

``publish`` is the one place an executor writes these files into an artifact, ``fetch_model``
the one place a model file is copied out of one; both go through ``tfx.dsl.io.fileio``, so the
URI may be local, ``gs://`` or ``s3://``.

>>> serving = serving_dir("gs://bucket/BackboneRegularizer/model/7")
>>> model_uri(serving), report_uri(serving)  # doctest: +SKIP
('gs://bucket/BackboneRegularizer/model/7/Format-Serving/model.keras',
 'gs://bucket/BackboneRegularizer/model/7/regularization_report.json')
"""

from __future__ import annotations

import os

from tfx.dsl.io import fileio
from tfx.utils import path_utils

MODEL_FILE = "model.keras"
REPORT_FILE = "regularization_report.json"


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
    ``regularization_report.json``.

    The single place where our executors write an artifact's files: call it once, after every
    check passed, with everything the artifact holds (what a retried step on the same URI
    must leave behind, and what a record of the finished artifact would describe). The
    artifact's ``provenance.json`` is written after the executor's ``Do`` returns, by
    ``provenance_step.recorded``: once the files are published and the properties set.
    """
    files = {model_uri(serving_dir(artifact_uri)): model}
    if report is not None:
        files[report_uri(serving_dir(artifact_uri))] = report
    for target, local in files.items():
        fileio.makedirs(os.path.dirname(target))
        fileio.copy(os.fspath(local), target, overwrite=True)


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

"""Optional dependencies: import one, or fail with the extra of this package that installs it.

The core install (``pip install backbone-regularizer``) covers keras.applications backbones,
local and ``gs://`` files, and Kubeflow. Three features need an extra (pyproject.toml):

* ``s3``: ``s3://`` URIs (AWS S3, MinIO): ``tensorflow_io`` for ``tf.io.gfile`` and ``boto3``
  for Beam's file I/O and the bucket checks;
* ``kerashub``: KerasHub presets and ``.keras`` files of KerasHub backbones: ``keras_hub``;
* ``openlineage``: OpenLineage run events of each step (``openlineage_events``): the official
  client, ``openlineage-python``.

>>> keras_hub = import_extra("keras_hub", "A KerasHub preset")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from types import ModuleType

PACKAGE = "backbone-regularizer"
# Top-level module -> the extra that installs it.
EXTRA_OF = {
    "tensorflow_io": "s3",
    "boto3": "s3",
    "botocore": "s3",
    "keras_hub": "kerashub",
    "openlineage": "openlineage",
}


class MissingExtraError(ImportError):
    """A feature needs a package that only one of this package's extras installs."""


def install_hint(module: str) -> str:
    """``pip install 'backbone-regularizer[<extra>]'`` for ``module``'s top-level package."""
    extra = EXTRA_OF[module.split(".")[0]]
    return f"pip install '{PACKAGE}[{extra}]'"


def import_extra(module: str, needed_for: str) -> ModuleType:
    """Import ``module`` (one of ``EXTRA_OF``'s packages or a submodule of one).

    Raises:
        MissingExtraError: it is not installed; the message names the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        raise MissingExtraError(
            f"{needed_for} needs the `{top}` package, which the `{EXTRA_OF[top]}` extra "
            f"installs. Expected it installed: {install_hint(top)}. "
            f"Received: {type(err).__name__}: {err}"
        ) from err

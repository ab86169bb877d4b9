"""BackboneRegularizer: attach, verify and publish regularizers on a pre-trained Keras backbone.

The regularization logic (``spec``, ``slots``, ``attach``, ``verify``, ``workflow``) is plain
Keras and imports no TFX; ``BackboneRegularizer`` (the TFX component) is imported lazily so
that ``from backbone_regularizer.components.regularizer import regularize`` works without TFX.
Importing the package
registers the ``.keras`` plan envelope and ``L2SP``, which loading a regularized file written
in the envelope needs (``file_format.py``: most files are plain Keras and need nothing).
"""

from backbone_regularizer.components.regularizer.attach import capture_baseline, regularize
from backbone_regularizer.components.regularizer.checks import VerificationError, verify
from backbone_regularizer.components.regularizer.file_format import save_regularized
from backbone_regularizer.components.regularizer.penalties import L2SP, head_l2
from backbone_regularizer.components.regularizer.report import RegularizationReport
from backbone_regularizer.components.regularizer.spec import RegularizationSpec
from backbone_regularizer.components.regularizer.workflow import regularize_file

__all__ = [
    "L2SP",
    "BackboneRegularizer",
    "RegularizationReport",
    "RegularizationSpec",
    "VerificationError",
    "capture_baseline",
    "head_l2",
    "regularize",
    "regularize_file",
    "save_regularized",
    "verify",
]


def __getattr__(name: str):
    if name == "BackboneRegularizer":
        from backbone_regularizer.components.regularizer.component import BackboneRegularizer

        return BackboneRegularizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

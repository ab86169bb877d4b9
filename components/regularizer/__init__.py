"""BackboneRegularizer: attach, verify and publish regularizers on a pre-trained Keras backbone.

The regularization logic (``spec``, ``slots``, ``attach``, ``verify``, ``workflow``) is plain
Keras and imports no TFX; ``BackboneRegularizer`` (the TFX component) is imported lazily so
that ``from components.regularizer import regularize`` works without TFX.
"""

from components.regularizer.attach import capture_baseline, regularize
from components.regularizer.checks import VerificationError, verify
from components.regularizer.report import RegularizationReport
from components.regularizer.spec import RegularizationSpec
from components.regularizer.workflow import regularize_file

__all__ = [
    "BackboneRegularizer",
    "RegularizationReport",
    "RegularizationSpec",
    "VerificationError",
    "capture_baseline",
    "regularize",
    "regularize_file",
    "verify",
]


def __getattr__(name: str):
    if name == "BackboneRegularizer":
        from components.regularizer.component import BackboneRegularizer

        return BackboneRegularizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

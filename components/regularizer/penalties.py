"""L2-SP: an L2 penalty toward the pre-trained weights instead of toward zero.

Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with Convolutional
Networks" (ICML 2018): for a backbone weight ``w`` with pre-trained value ``w0``,

    penalty = alpha / 2 * sum((w - w0) ** 2)

(note the factor 1/2, which Keras' own ``L2`` does not have). The paper's second term,
``beta / 2 * sum(w ** 2)`` on the *new* head, belongs to whoever builds the head (the Trainer):
``head_l2(beta)`` gives the Keras ``L2`` regularizer with that formula.

Each regularized weight has its own ``L2SP`` instance holding its anchor ``w0`` in a
non-trainable variable that is not a model weight (so the weights checksum, ``model.weights``
and the exported model do not change). The config serializes ``alpha`` only: the anchor is
never written; it is taken from the weights themselves, which at that moment are exactly the
weights whose checksum the regularizer recorded (see ``plan.py``).
"""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="backbone_regularizer", name="L2SP")
class L2SP(keras.regularizers.Regularizer):
    """``alpha / 2 * sum((w - w0) ** 2)`` toward an anchor ``w0`` set with ``anchor_to``.

    >>> import numpy as np
    >>> r = L2SP(alpha=0.1)
    >>> r.anchor_to(np.zeros(3, "float32"))
    >>> float(r(np.array([1.0, 2.0, 0.0], "float32")))  # 0.1 / 2 * (1 + 4)
    0.25

    Calling an instance without an anchor raises: a penalty toward an unknown point would be
    silently wrong.
    """

    def __init__(self, alpha: float):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ValueError(
                "Invalid value for argument `alpha`. Expected a number > 0. "
                f"Received: alpha={alpha!r}"
            )
        self.alpha = float(alpha)
        self._anchor: keras.Variable | None = None

    @property
    def anchored(self) -> bool:
        return self._anchor is not None

    def anchor_to(self, value) -> None:
        """Set the anchor ``w0`` to a copy of ``value`` (an array or a variable's value)."""
        array = np.array(keras.ops.convert_to_numpy(value), copy=True)
        if self._anchor is None:
            self._anchor = keras.Variable(
                array, trainable=False, dtype=array.dtype, name="l2sp_anchor"
            )
        else:
            self._anchor.assign(array)

    def anchor_numpy(self) -> np.ndarray:
        if self._anchor is None:
            raise ValueError(self._no_anchor())
        return np.asarray(keras.ops.convert_to_numpy(self._anchor.value))

    def __call__(self, x):
        if self._anchor is None:
            raise ValueError(self._no_anchor())
        anchor = self._anchor.value
        if keras.backend.standardize_dtype(x.dtype) != self._anchor.dtype:
            anchor = keras.ops.cast(anchor, x.dtype)
        return (self.alpha / 2.0) * keras.ops.sum(keras.ops.square(x - anchor))

    def get_config(self) -> dict:
        return {"alpha": self.alpha}

    def _no_anchor(self) -> str:
        return (
            f"Expected an anchored L2SP(alpha={self.alpha:g}) regularizer. Received: one without "
            "anchor w0. Load the regularized model with `keras.saving.load_model` in a process "
            "that imported `backbone_regularizer.components.regularizer` (its plan restores the "
            "anchors when the "
            "weights are loaded), or call `anchor_to(w0)`."
        )


def needs_anchor(regularizer) -> bool:
    return isinstance(regularizer, L2SP)


def head_l2(beta: float) -> keras.regularizers.L2:
    """The paper's head penalty ``beta / 2 * sum(w ** 2)`` as a Keras ``L2`` (factor beta/2)."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
        raise ValueError(
            f"Invalid value for argument `beta`. Expected a number >= 0. Received: beta={beta!r}"
        )
    return keras.regularizers.L2(beta / 2.0)

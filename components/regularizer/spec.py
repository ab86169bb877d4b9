"""What to regularize and how: a validated, JSON-serializable specification (plain Python)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

import keras

from backbone_regularizer.components.regularizer.penalties import L2SP

# Weight kinds regularized by default: every multiplicative weight matrix of a layer.
DEFAULT_KINDS = ("kernel", "depthwise", "pointwise", "recurrent", "embeddings")
BIAS_KINDS = ("bias",)
NORM_KINDS = ("gamma", "beta")
_LIST_FIELDS = ("include", "exclude", "layer_types", "extra_kinds")


def _check_factor(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a finite number >= 0. "
            f"Received: {name}={value!r}"
        )
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a finite number >= 0. "
            f"Received: {name}={value!r}"
        )
    return value


def _check_patterns(name: str, patterns: Any) -> tuple[str, ...]:
    if isinstance(patterns, str) or not isinstance(patterns, (list, tuple)):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a list of regular expressions. "
            f"Received: {name}={patterns!r}"
        )
    for pattern in patterns:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as err:
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected valid regular expressions. "
                f"Received: {pattern!r} ({err})"
            ) from None
    return tuple(patterns)


@dataclasses.dataclass(frozen=True)
class RegularizationSpec:
    """Which weights get which penalty, and how the backbone is frozen for fine-tuning.

    The penalty added to the loss for each regularized trainable weight ``w`` is
    ``l1 * sum(abs(w)) + l2 * sum(w**2)`` (Keras' L1L2; note: no factor 1/2 on L2), or with
    ``l2_sp`` the L2-SP penalty ``l2_sp / 2 * sum((w - w0)**2)`` toward the weights ``w0`` the
    model has now, i.e. the pre-trained weights whose checksum is recorded (``penalties.L2SP``).

    >>> spec = RegularizationSpec(l2=1e-4, exclude=("^.*/head",))
    >>> spec.regularizer_summary()
    'L2(l2=0.0001)'

    Args:
        l1: L1 factor (>= 0).
        l2: L2 factor (>= 0). At least one factor must be > 0 unless ``custom`` is given;
            there is no silent default penalty.
        l2_sp: L2-SP factor ``alpha`` (> 0 to use it; not combinable with l1/l2/custom). The
            head's ``beta / 2 * sum(w**2)`` of the paper is the Trainer's concern
            (``penalties.head_l2(beta)``).
        custom: a serialized, *registered* Keras regularizer
            (``keras.regularizers.serialize(r)``) used instead of ``l1``/``l2``.
        include_bias: also regularize biases.
        include_norm: also regularize normalization ``gamma``/``beta``.
        include: regexes searched in the layer path (``model/block/layer``); when given, only
            matching layers are regularized.
        exclude: regexes searched in the layer path; matching layers are never regularized.
        layer_types: class names (``"Conv2D"``, ``"Dense"``) to restrict the targets to.
        extra_kinds: further slot kinds to target, for layers with other weights (a PReLU's
            ``alpha``, a custom layer's ``scale_regularizer`` -> ``"scale"``).
        freeze_until: freeze every layer before the layer of this name (walk order).
        freeze_fraction: freeze this fraction (0..1) of the weight-holding layers, first first.
        freeze_batchnorm: set ``trainable=False`` on every BatchNormalization layer. Needed on
            keras 3.12, where ``training=False`` does not keep BN in inference mode in ``fit()``.
        probe_batch_size: size of the seeded random batch used to compare predictions.
    """

    l1: float = 0.0
    l2: float = 0.0
    l2_sp: float = 0.0
    custom: dict | None = None
    include_bias: bool = False
    include_norm: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    layer_types: tuple[str, ...] = ()
    extra_kinds: tuple[str, ...] = ()
    freeze_until: str | None = None
    freeze_fraction: float | None = None
    freeze_batchnorm: bool = True
    probe_batch_size: int = 2

    def __post_init__(self):
        set_ = object.__setattr__  # frozen dataclass: normalise in place once
        set_(self, "l1", _check_factor("l1", self.l1))
        set_(self, "l2", _check_factor("l2", self.l2))
        set_(self, "l2_sp", _check_factor("l2_sp", self.l2_sp))
        set_(self, "include", _check_patterns("include", self.include))
        set_(self, "exclude", _check_patterns("exclude", self.exclude))
        set_(self, "layer_types", _check_patterns("layer_types", self.layer_types))
        set_(self, "extra_kinds", _check_patterns("extra_kinds", self.extra_kinds))
        for name in ("include_bias", "include_norm", "freeze_batchnorm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"Invalid value for argument `{name}`. Expected a bool. "
                    f"Received: {name}={getattr(self, name)!r}"
                )
        if self.custom is None and self.l1 == 0 and self.l2 == 0 and self.l2_sp == 0:
            raise ValueError(
                "Expected a penalty: l1 > 0, l2 > 0, l2_sp > 0 or a custom regularizer. "
                "Received: l1=0.0, l2=0.0, l2_sp=0.0, custom=None"
            )
        if self.l2_sp and (self.l1 or self.l2 or self.custom is not None):
            raise ValueError(
                "Expected either l2_sp or l1/l2/custom, not both. "
                f"Received: l1={self.l1}, l2={self.l2}, l2_sp={self.l2_sp}, custom={self.custom!r}"
            )
        if self.custom is not None and (self.l1 or self.l2):
            raise ValueError(
                "Expected either l1/l2 factors or a custom regularizer, not both. "
                f"Received: l1={self.l1}, l2={self.l2}, custom={self.custom!r}"
            )
        if self.custom is not None:
            self.build_regularizer()  # fail now on unknown or unregistered classes
        if self.freeze_until is not None and not isinstance(self.freeze_until, str):
            raise ValueError(
                "Invalid value for argument `freeze_until`. Expected a layer name. "
                f"Received: freeze_until={self.freeze_until!r}"
            )
        if self.freeze_until is not None and self.freeze_fraction is not None:
            raise ValueError(
                "Expected at most one of `freeze_until` and `freeze_fraction`. "
                f"Received: freeze_until={self.freeze_until!r}, "
                f"freeze_fraction={self.freeze_fraction!r}"
            )
        if self.freeze_fraction is not None:
            fraction = _check_factor("freeze_fraction", self.freeze_fraction)
            if fraction > 1:
                raise ValueError(
                    "Invalid value for argument `freeze_fraction`. Expected a number in [0, 1]. "
                    f"Received: freeze_fraction={self.freeze_fraction!r}"
                )
            set_(self, "freeze_fraction", fraction)
        if (
            isinstance(self.probe_batch_size, bool)
            or not isinstance(self.probe_batch_size, int)
            or not 1 <= self.probe_batch_size <= 256
        ):
            raise ValueError(
                "Invalid value for argument `probe_batch_size`. Expected an int in [1, 256]. "
                f"Received: probe_batch_size={self.probe_batch_size!r}"
            )

    @property
    def kinds(self) -> tuple[str, ...]:
        return (
            DEFAULT_KINDS
            + (BIAS_KINDS if self.include_bias else ())
            + (NORM_KINDS if self.include_norm else ())
            + self.extra_kinds
        )

    def build_regularizer(self) -> keras.regularizers.Regularizer:
        """A fresh Keras regularizer instance for one weight.

        Raises:
            ValueError: if ``custom`` names a class Keras cannot deserialize (unknown or not
                registered with ``keras.saving.register_keras_serializable``).
        """
        if self.l2_sp:
            return L2SP(self.l2_sp)
        if self.custom is None:
            if self.l1 and self.l2:
                return keras.regularizers.L1L2(l1=self.l1, l2=self.l2)
            if self.l1:
                return keras.regularizers.L1(self.l1)
            return keras.regularizers.L2(self.l2)
        if not isinstance(self.custom, dict) or "class_name" not in self.custom:
            raise ValueError(
                "Invalid value for argument `custom`. Expected a serialized Keras regularizer "
                "(a dict with 'class_name' and 'config'). "
                f"Received: custom={self.custom!r}"
            )
        try:
            regularizer = keras.regularizers.deserialize(self.custom)
        except (TypeError, ValueError) as err:
            regularizer, reason = None, f" ({err})"
        else:
            reason = ""
        if not isinstance(regularizer, keras.regularizers.Regularizer):
            raise ValueError(
                "Unknown regularizer. Expected one of L1, L2, L1L2 or a class registered with "
                "`keras.saving.register_keras_serializable`. "
                f"Received: class_name={self.custom.get('class_name')!r}{reason}"
            )
        return regularizer

    def regularizer_summary(self) -> str:
        if self.l2_sp:
            return f"L2SP(alpha={self.l2_sp:g})"
        if self.custom is not None:
            config = self.custom.get("config") or {}
            args = ", ".join(f"{k}={v}" for k, v in sorted(config.items()))
            return f"{self.custom['class_name']}({args})"
        if self.l1 and self.l2:
            return f"L1L2(l1={self.l1:g}, l2={self.l2:g})"
        if self.l1:
            return f"L1(l1={self.l1:g})"
        return f"L2(l2={self.l2:g})"

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for key in _LIST_FIELDS:
            data[key] = list(data[key])
        return data

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): identical specs give identical strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> RegularizationSpec:
        """Build a spec from a dict, rejecting unknown keys by name."""
        if not isinstance(data, dict):
            raise ValueError(
                f"Expected a JSON object for the regularization spec. Received: {data!r}"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(
                f"Unknown regularization spec keys: {unknown}. Expected keys among "
                f"{sorted(fields)}."
            )
        data = dict(data)
        for key in _LIST_FIELDS:
            if key in data and isinstance(data[key], list):
                data[key] = tuple(data[key])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RegularizationSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"Expected the regularization spec as JSON. Received: {text!r} ({err})"
            ) from None
        return cls.from_dict(data)

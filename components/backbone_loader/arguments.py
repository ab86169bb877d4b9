"""The BackboneLoader's arguments, checked before anything is built: architecture, weights,
input shape, pooling and constructor keyword arguments, with Keras-style errors.

Plain Keras, no TFX; the component checks them at pipeline-build time, the executor again at
run time.

>>> check_architecture("mobilenetv2")
Traceback (most recent call last):
ValueError: Unknown architecture. Expected the name of a keras.applications model. Did you mean
'MobileNetV2' or 'MobileNet' or 'MobileNetV3Large'? Received: architecture='mobilenetv2'
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Sequence
from typing import Any

import keras

IMAGENET = "imagenet"
# "none" spells Python None in exec properties (random weights; no global pooling).
NONE = "none"
# `.weights.h5` is Keras 3's format; `.h5`/`.hdf5` are the legacy files keras.applications
# itself downloads (e.g. a pre-fetched `*_no_top.h5` copied to a bucket).
WEIGHTS_FILE_SUFFIXES = (".weights.h5", ".h5", ".hdf5")
POOLING_MODES = ("avg", "max")

_NO_HEAD = "it has no effect without the classification head (include_top=False)"
# Constructor arguments the loader sets itself, and why they cannot be passed in `kwargs`.
RESERVED_KWARGS = {
    "include_top": "the loader always builds a headless backbone (include_top=False)",
    "weights": "use the `weights` argument",
    "input_shape": "use the `input_shape` argument",
    "input_tensor": "the backbone gets its own Input of `input_shape`",
    "pooling": "use the `pooling` argument",
    "classes": _NO_HEAD,
    "classifier_activation": _NO_HEAD,
}


def _close_matches(word: str, candidates: list[str], n: int = 3) -> list[str]:
    """Like ``difflib.get_close_matches`` but ties go to the alphabetically first candidate,
    so that 'EfficientNetBO' suggests 'EfficientNetB0' before 'EfficientNetB7'."""
    scored = []
    for candidate in candidates:
        matcher = difflib.SequenceMatcher(None, word, candidate)
        if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6:
            ratio = matcher.ratio()
            if ratio >= 0.6:
                scored.append((-ratio, candidate))
    return [candidate for _, candidate in sorted(scored)[:n]]


def available_architectures() -> list[str]:
    """Names of the model constructors in ``keras.applications`` (``"MobileNetV2"``, ...)."""
    return sorted(
        name
        for name in dir(keras.applications)
        if name[:1].isupper() and callable(getattr(keras.applications, name))
    )


def check_architecture(architecture: str) -> str:
    """Return ``architecture`` if ``keras.applications`` has it.

    Raises:
        ValueError: not a string, or an unknown name (the message lists close matches).
    """
    names = available_architectures()
    if not isinstance(architecture, str):
        raise ValueError(
            "Invalid value for argument `architecture`. Expected a keras.applications class "
            f"name such as 'MobileNetV2'. Received: architecture={architecture!r}"
        )
    if architecture in names:
        return architecture
    by_lower = {name.lower(): name for name in names}
    close = _close_matches(architecture.lower(), list(by_lower))
    hint = (
        f"Did you mean {' or '.join(repr(by_lower[c]) for c in close)}?"
        if close
        else f"Available: {names}."
    )
    raise ValueError(
        f"Unknown architecture. Expected the name of a keras.applications model. {hint} "
        f"Received: architecture={architecture!r}"
    )


def check_weights(weights: str | None) -> str:
    """Normalize ``weights`` to ``"imagenet"``, ``"none"`` or a weights-file path/URI.

    ``None`` means ``"none"`` (random initialization), as in Keras.

    Raises:
        ValueError: anything else, including a path without a weights-file suffix.
    """
    if weights is None or weights == NONE:
        return NONE
    if weights == IMAGENET:
        return IMAGENET
    if isinstance(weights, str) and weights.endswith(WEIGHTS_FILE_SUFFIXES):
        return weights
    raise ValueError(
        f"Invalid value for argument `weights`. Expected {IMAGENET!r}, {NONE!r} (random "
        "initialization) or the path/URI of a weights file ending in "
        f"{' or '.join(WEIGHTS_FILE_SUFFIXES)}. Received: weights={weights!r}"
    )


def parse_input_shape(input_shape: Sequence[int | None] | str) -> tuple[int | None, ...]:
    """``(height, width, channels)`` from a sequence or its JSON (``"[32, 32, 3]"``).

    Height and width may be ``None`` (any size); channels must be a positive int.

    Raises:
        ValueError: invalid JSON, not three entries, or an entry that is not a positive int.
    """
    value = input_shape
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    ok = isinstance(value, (list, tuple)) and len(value) == 3
    if ok:
        for index, dim in enumerate(value):
            is_int = isinstance(dim, int) and not isinstance(dim, bool)
            if not (is_int and dim > 0) and not (dim is None and index < 2):
                ok = False
    if not ok:
        raise ValueError(
            "Invalid value for argument `input_shape`. Expected (height, width, channels): "
            "3 positive ints, height and width may be None (JSON null), e.g. [32, 32, 3]. "
            f"Received: input_shape={input_shape!r}"
        )
    return tuple(value)


def input_shape_json(input_shape: Sequence[int | None]) -> str:
    """Canonical JSON of an input shape: ``"[32, 32, 3]"``."""
    return json.dumps(list(input_shape))


def check_pooling(pooling: str | None) -> str | None:
    """Return ``None``, ``"avg"`` or ``"max"``; the string ``"none"`` means ``None``.

    Raises:
        ValueError: any other value.
    """
    if pooling is None or pooling == NONE:
        return None
    if pooling in POOLING_MODES:
        return pooling
    raise ValueError(
        "Invalid value for argument `pooling`. Expected one of [None, 'avg', 'max']. "
        f"Received: pooling={pooling!r}"
    )


def _compatible(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True  # default None (or other): Keras decides


def parse_kwargs(architecture: str, kwargs: dict | str | None) -> dict[str, Any]:
    """Extra constructor arguments (``{"alpha": 0.35}``), checked against the signature.

    Accepts a dict or its JSON. Keys must be parameters of
    ``keras.applications.<architecture>`` that the loader does not set itself; values must be
    JSON scalars of the same kind as the parameter's default (a number for ``alpha``).

    Raises:
        ValueError: invalid JSON, not an object, a reserved or unknown key, or a value of the
            wrong kind.
    """
    name = check_architecture(architecture)
    value = kwargs
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(
                "Invalid value for argument `kwargs`. Expected a JSON object of constructor "
                f'arguments, e.g. {{"alpha": 0.35}}. Received: kwargs={kwargs!r} ({err})'
            ) from None
    if not isinstance(value, dict):
        raise ValueError(
            "Invalid value for argument `kwargs`. Expected a JSON object (dict) of constructor "
            f"arguments, e.g. {{'alpha': 0.35}}. Received: kwargs={kwargs!r}"
        )
    parameters = inspect.signature(getattr(keras.applications, name)).parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = sorted(
        p
        for p, spec in parameters.items()
        if p not in RESERVED_KWARGS and spec.kind is not inspect.Parameter.VAR_KEYWORD
    )
    for key, item in value.items():
        if key in RESERVED_KWARGS:
            raise ValueError(
                f"Invalid key in argument `kwargs`: {RESERVED_KWARGS[key]}. Expected keys among "
                f"{accepted}. Received: kwargs={{{key!r}: {item!r}}}"
            )
        if key not in parameters and not open_ended:
            close = _close_matches(str(key), accepted, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"Unknown argument of keras.applications.{name} in `kwargs`.{hint} Expected keys "
                f"among {accepted}. Received: kwargs={{{key!r}: {item!r}}}"
            )
        if item is not None and not isinstance(item, (bool, int, float, str)):
            raise ValueError(
                "Invalid value in argument `kwargs`. Expected JSON scalars (number, string, "
                f"bool, null). Received: {key}={item!r}"
            )
        default = parameters[key].default if key in parameters else None
        if default is not inspect.Parameter.empty and not _compatible(item, default):
            raise ValueError(
                f"Invalid value in argument `kwargs`. Expected `{key}` of the same kind as its "
                f"default {default!r} ({type(default).__name__}). Received: {key}={item!r}"
            )
    return dict(value)


def kwargs_json(kwargs: dict[str, Any]) -> str:
    """Canonical JSON of constructor kwargs (sorted keys): ``'{"alpha": 0.35}'``."""
    return json.dumps(kwargs, sort_keys=True)


def describe_source(architecture: str, weights: str) -> str:
    """Provenance string: ``keras.applications.MobileNetV2(weights=imagenet)`` or the file."""
    weights = check_weights(weights)
    if weights == IMAGENET:
        return f"keras.applications.{architecture}(weights=imagenet)"
    if weights == NONE:
        return f"keras.applications.{architecture}(weights=None)"
    return weights

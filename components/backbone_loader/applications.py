"""Build a headless ``keras.applications`` backbone from plain arguments, with clear errors.

Plain Keras, no TFX: the ``BackboneLoader`` executor copies artifacts around these functions.
The backbone is always built with ``include_top=False``; the weights come from Keras'
ImageNet download (``"imagenet"``), random initialization (``"none"``) or a local weights file.

>>> from components.backbone_loader.applications import build_backbone, save_backbone
>>> model = build_backbone("MobileNetV2", "none", [32, 32, 3], kwargs={"alpha": 0.35})
>>> model.output.shape
(None, 1, 1, 1280)
>>> digest = save_backbone(model, "backbone/model.keras")  # SHA-256 of the saved weights
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

from components.regularizer.fingerprint import weights_sha256
from components.regularizer.slots import iter_layers

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

_DOWNLOAD_FAILURE = "URL fetch failure"
_MIN_SIZE = re.compile(r"at least (\d+)x(\d+)")


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


def _call_repr(name: str, call: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(call.items()))
    return f"keras.applications.{name}({args})"


def _construction_error(name: str, call: dict[str, Any], err: Exception) -> Exception:
    text = str(err)
    minimum = _MIN_SIZE.search(text)
    if minimum:
        return ValueError(
            f"Input shape too small for {name}. Expected height and width of at least "
            f"{minimum.group(1)}x{minimum.group(2)} (the minimum of keras.applications.{name}). "
            f"Received: input_shape={list(call['input_shape'])}"
        )
    if _DOWNLOAD_FAILURE in text:
        return OSError(
            f"Could not download the ImageNet weights of {name} ({text}). Expected network "
            "access to Keras' weight storage, or a pre-downloaded weights file: pass its "
            f"path/URI as `weights`. Received: weights={call['weights']!r}"
        )
    return ValueError(
        f"keras.applications.{name} rejected its arguments ({text}). Expected arguments it "
        f"accepts. Received: {_call_repr(name, call)}"
    )


def _check_feature_maps(model: keras.Model, name: str, input_shape: tuple) -> None:
    """Fail when some layer's output has a zero-size dimension.

    Keras rejects inputs below each model's documented minimum, but a graph can still build with
    an empty feature map (a 'valid' conv or pool larger than its input); global pooling then
    returns NaN instead of failing.
    """
    for path, layer, _ in iter_layers(model):
        try:
            outputs = keras.tree.flatten(layer.output)
        except (AttributeError, ValueError):  # unbuilt or shared layer: no single output
            continue
        for tensor in outputs:
            shape = tuple(getattr(tensor, "shape", ()))
            if any(dim == 0 for dim in shape[1:]):
                raise ValueError(
                    f"Input shape too small for {name}: layer {path!r} produces an empty "
                    f"feature map of shape {shape}. Expected a larger height and width. "
                    f"Received: input_shape={list(input_shape)}"
                )


def load_weights_file(model: keras.Model, path: str | os.PathLike, label: str | None = None):
    """``model.load_weights(path)`` with an error that names the first mismatching weight.

    Args:
        model: the backbone, built with ``weights=None``.
        path: a local ``.weights.h5`` (Keras 3) or legacy ``.h5``/``.hdf5`` file.
        label: how to name the file in errors (e.g. the URI it was copied from).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a Keras weights file, or weights that do not fit the model.
    """
    label = label or str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"Expected a weights file. Received: weights={label!r} (missing)")
    try:
        model.load_weights(path)
    except ValueError as err:
        raise ValueError(
            f"Weights file does not match the backbone {model.name!r}. Expected weights saved "
            "from the same keras.applications model with the same constructor arguments "
            f"(e.g. `alpha`) and input channels. Received: weights={label!r}: "
            f"{_mismatch_detail(str(err))}"
        ) from err
    except OSError as err:  # h5py: not an HDF5 file at all
        raise ValueError(
            f"Expected a Keras weights file (HDF5). Received: weights={label!r} ({err})"
        ) from err


def _mismatch_detail(text: str) -> str:
    """The useful part of Keras' load error: how many objects failed and the first mismatch."""
    count = re.search(r"A total of (\d+) objects could not be loaded", text)
    shapes = re.search(r"variable\.shape=(\(.*?\)), Received: value\.shape=(\(.*?\))", text)
    target = re.search(r"Target variable: <Variable path=([^,\s]+)", text)
    parts = [f"{count.group(1)} objects could not be loaded"] if count else []
    if shapes:
        where = target.group(1) if target else "a weight"
        parts.append(f"{where} expects shape {shapes.group(1)}, the file has {shapes.group(2)}")
    elif count:
        lines = [line for line in text.splitlines()[1:] if line.strip()]
        if lines:
            parts.append(lines[0].strip())
    return "; ".join(parts) if parts else text.splitlines()[0]


def build_backbone(
    architecture: str,
    weights: str | None,
    input_shape: Sequence[int | None] | str,
    pooling: str | None = None,
    kwargs: dict | str | None = None,
) -> keras.Model:
    """Build ``keras.applications.<architecture>(include_top=False, ...)`` and load its weights.

    >>> build_backbone("ResNet50", "none", [16, 16, 3])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: Input shape too small for ResNet50. Expected height and width of at least 32x32...

    Args:
        architecture: a ``keras.applications`` model name (``"MobileNetV2"``, ``"ResNet50"``).
        weights: ``"imagenet"`` (Keras downloads and caches them), ``"none"``/``None`` (random
            initialization) or a local weights file (``.weights.h5``, legacy ``.h5``).
        input_shape: ``(height, width, channels)`` or its JSON.
        pooling: ``None`` (4D feature map), ``"avg"`` or ``"max"`` (global pooling, 2D output).
        kwargs: further constructor arguments, a dict or JSON (``{"alpha": 0.35}``).

    Returns:
        The headless backbone (not compiled).

    Raises:
        ValueError: unknown architecture, bad argument, input too small (the message names the
            minimum), arguments Keras rejects, or a weights file that does not fit.
        FileNotFoundError: the weights file does not exist.
        OSError: the ImageNet weights could not be downloaded.
    """
    name = check_architecture(architecture)
    weights = check_weights(weights)
    shape = parse_input_shape(input_shape)
    call = dict(
        parse_kwargs(name, kwargs),
        include_top=False,
        weights=IMAGENET if weights == IMAGENET else None,
        input_shape=shape,
        pooling=check_pooling(pooling),
    )
    try:
        model = getattr(keras.applications, name)(**call)
    except Exception as err:  # Keras raises ValueError, TypeError and bare Exception here.
        translated = _construction_error(name, call, err)
        if isinstance(err, (ValueError, TypeError)) or isinstance(translated, OSError):
            raise translated from err
        raise
    _check_feature_maps(model, name, shape)
    if weights not in (IMAGENET, NONE):
        load_weights_file(model, weights)
    return model


def save_backbone(model: keras.Model, path: str | os.PathLike) -> str:
    """Save ``model`` to a local ``.keras`` file, reload it and return its weights' SHA-256.

    The digest is ``components.regularizer.fingerprint.weights_sha256`` of the *reloaded* file,
    which is what ``BackboneRegularizer`` computes on its input.

    Raises:
        ValueError: ``path`` does not end in ``.keras``.
        RuntimeError: the reloaded weights differ from the model's (nothing usable was saved).
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Expected a path ending in .keras. Received: path={str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    expected = weights_sha256(model)
    saved = weights_sha256(keras.saving.load_model(path, compile=False))
    if saved != expected:
        raise RuntimeError(
            f"Saved backbone {str(path)!r} reloads with different weights. Expected "
            f"weights_sha256={expected}. Received: weights_sha256={saved}"
        )
    return saved

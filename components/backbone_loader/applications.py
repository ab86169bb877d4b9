"""Build a headless ``keras.applications`` backbone from plain arguments, with clear errors.

Plain Keras, no TFX: the ``BackboneLoader`` executor copies artifacts around these functions.
The backbone is always built with ``include_top=False``; the weights come from Keras'
ImageNet download (``"imagenet"``), random initialization (``"none"``) or a local weights file.

>>> from backbone_regularizer.components.backbone_loader.applications import build_backbone,
save_backbone
>>> model = build_backbone("MobileNetV2", "none", [32, 32, 3], kwargs={"alpha": 0.35})
>>> model.output.shape
(None, 1, 1, 1280)
>>> digest = save_backbone(model, "backbone/model.keras")  # SHA-256 of the saved weights
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

from backbone_regularizer.components.backbone_loader.arguments import (
    IMAGENET,
    NONE,
    check_architecture,
    check_pooling,
    check_weights,
    parse_input_shape,
    parse_kwargs,
)
from backbone_regularizer.components.regularizer.keras_file import (
    iter_layers,
    load_keras_model,
    weights_sha256,
)

_DOWNLOAD_FAILURE = "URL fetch failure"
_MIN_SIZE = re.compile(r"at least (\d+)x(\d+)")


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

    The digest is ``keras_file.weights_sha256`` of the *reloaded* file, which is what
    ``BackboneRegularizer`` computes on its input.

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
    saved = weights_sha256(load_keras_model(path))
    if saved != expected:
        raise RuntimeError(
            f"Saved backbone {str(path)!r} reloads with different weights. Expected "
            f"weights_sha256={expected}. Received: weights_sha256={saved}"
        )
    return saved

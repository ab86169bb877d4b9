"""Load a KerasHub backbone from a preset: a built-in name, a hub handle or a preset directory.

Plain Keras and KerasHub, no TFX: the ``BackboneLoader`` executor copies ``gs://``/``s3://``
preset directories to a local folder with ``tfx.dsl.io.fileio`` and calls ``load_preset``.
A preset is what ``keras_hub.models.Backbone.from_preset`` reads: a built-in name
(``"resnet_18_imagenet"``, downloaded from Kaggle Models), a ``kaggle://``, ``hf://`` or
``modelscope://`` handle, or a directory written by ``backbone.save_to_preset(dir)``
(``config.json``, ``model.weights.h5``, ``metadata.json``).

>>> backbone.save_to_preset("presets/tiny_resnet")
>>> model, source = load_preset("presets/tiny_resnet")
>>> source
"keras_hub.models.Backbone.from_preset('presets/tiny_resnet')"
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import keras

from backbone_regularizer.components.backbone_loader.arguments import _close_matches
from backbone_regularizer.components.extras import import_extra

PRESET_WEIGHTS = "preset"  # the preset's own weights
NONE = "none"  # the preset's architecture, randomly initialized (load_weights=False)
HUB_SCHEMES = ("kaggle", "hf", "modelscope")  # handles KerasHub downloads itself
CONFIG_FILE = "config.json"
NAME = "name"
HUB = "hub"
URI = "uri"
LOCAL = "local"


def preset_kind(preset: str) -> str:
    """``"uri"`` (``gs://``, ``s3://``: copied by the executor), ``"hub"`` (``kaggle://``,
    ``hf://``, ``modelscope://``), ``"local"`` (a path) or ``"name"`` (a built-in name)."""
    if "://" in preset:
        return HUB if preset.split("://", 1)[0].lower() in HUB_SCHEMES else URI
    if os.sep in preset or preset.startswith(".") or os.path.isdir(preset):
        return LOCAL
    return NAME


def builtin_presets() -> dict[str, dict]:
    """KerasHub's built-in backbone presets: name -> {"kaggle_handle", "metadata"}.

    Raises:
        MissingExtraError: keras-hub is not installed (the ``kerashub`` extra).
    """
    keras_hub = import_extra("keras_hub", "A KerasHub preset")
    return dict(keras_hub.models.Backbone.presets)


def check_preset(preset: str) -> str:
    """Return ``preset`` if it is a well-formed preset handle; built-in names must exist.

    Raises:
        ValueError: not a non-empty string, or a name that is neither a built-in preset (the
            message suggests close names) nor an existing directory.
    """
    if not isinstance(preset, str) or not preset.strip():
        raise ValueError(
            "Invalid value for argument `preset`. Expected a KerasHub preset: a built-in name "
            "such as 'resnet_18_imagenet', a kaggle:// or hf:// handle, or the path/URI of a "
            f"directory written by `backbone.save_to_preset(dir)`. Received: preset={preset!r}"
        )
    if preset_kind(preset) != NAME:
        return preset
    names = sorted(builtin_presets())
    if preset in names:
        return preset
    close = _close_matches(preset, names)
    hint = f"Did you mean {' or '.join(map(repr, close))}? " if close else ""
    raise ValueError(
        f"Unknown KerasHub preset. {hint}Expected one of the {len(names)} built-in names of "
        "keras_hub.models.Backbone.presets, or a preset directory (write './name' for a "
        f"relative path). Received: preset={preset!r}"
    )


def check_weights(weights: str | None) -> str:
    """``"preset"`` (the preset's weights) or ``"none"`` (random initialization).

    Raises:
        ValueError: anything else.
    """
    if weights is None or weights == NONE:
        return NONE
    if weights == PRESET_WEIGHTS:
        return PRESET_WEIGHTS
    raise ValueError(
        f"Invalid value for argument `weights` with a preset. Expected {PRESET_WEIGHTS!r} (the "
        f"preset's own weights) or {NONE!r} (its architecture, randomly initialized). "
        f"Received: weights={weights!r}"
    )


def describe_preset(preset: str, weights: str) -> str:
    """Provenance: ``keras_hub.models.Backbone.from_preset('resnet_18_imagenet')``, with the
    versioned Kaggle handle of a built-in name and ``load_weights=False`` when random."""
    call = f"keras_hub.models.Backbone.from_preset({preset!r}"
    if check_weights(weights) == NONE:
        call += ", load_weights=False"
    call += ")"
    if preset_kind(preset) == NAME:
        handle = builtin_presets().get(preset, {}).get("kaggle_handle")
        if handle:
            call += f" [{handle}]"
    return call


def _download_error(preset: str, err: Exception) -> OSError:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return OSError(
        f"Could not download KerasHub preset {preset!r} ({type(err).__name__}: "
        f"{first_line[:300]}). Expected network access to Kaggle Models or Hugging Face (and "
        "credentials if the model needs them), or a preset directory written by "
        "`backbone.save_to_preset(dir)` (local, gs:// or s3://): pass its path/URI as "
        f"`preset`. Received: preset={preset!r}"
    )


def _check_local(preset: str, label: str) -> None:
    path = Path(preset)
    if not path.is_dir():
        raise FileNotFoundError(
            "Expected a KerasHub preset directory (written by `backbone.save_to_preset(dir)`). "
            f"Received: preset={label!r} (no such directory)"
        )
    if not (path / CONFIG_FILE).is_file():
        raise ValueError(
            f"Expected a KerasHub preset directory holding {CONFIG_FILE} (written by "
            f"`backbone.save_to_preset(dir)`). Received: preset={label!r}, which holds "
            f"{sorted(p.name for p in path.iterdir())}"
        )


def load_preset(
    preset: str,
    weights: str = PRESET_WEIGHTS,
    input_shape: tuple | None = None,
    label: str | None = None,
) -> keras.Model:
    """``keras_hub.models.Backbone.from_preset(preset)`` with clear errors.

    Args:
        preset: a built-in name, a hub handle, or a local preset directory (the executor
            copies ``gs://``/``s3://`` directories to one first).
        weights: ``"preset"`` (its weights) or ``"none"`` (``load_weights=False``).
        input_shape: for image backbones, overrides the preset's ``image_shape``
            (``(height, width, channels)``); ``None`` keeps it.
        label: how to name the preset in errors (e.g. the URI it was copied from).

    Raises:
        FileNotFoundError: a local preset directory that does not exist.
        ValueError: not a preset (no config.json, or not a KerasHub Backbone), or an
            ``input_shape`` the backbone does not take.
        OSError: a built-in name or hub handle that could not be downloaded.
        MissingExtraError: keras-hub is not installed (the ``kerashub`` extra).
    """
    keras_hub = import_extra("keras_hub", "A KerasHub preset")

    label = label or preset
    weights = check_weights(weights)
    kind = preset_kind(preset)
    if kind == LOCAL:
        _check_local(preset, label)
    kwargs: dict[str, Any] = {"load_weights": weights == PRESET_WEIGHTS}
    if input_shape is not None:
        kwargs["image_shape"] = tuple(input_shape)
    try:
        model = keras_hub.models.Backbone.from_preset(preset, **kwargs)
    except OSError as err:
        if kind in (NAME, HUB) and not isinstance(err, FileNotFoundError):
            raise _download_error(label, err) from err
        raise
    except ValueError as err:
        raise ValueError(
            f"Could not load KerasHub preset {label!r}: {err}. Expected a preset of a "
            "keras_hub.models.Backbone."
        ) from err
    if input_shape is not None:
        # KerasHub forwards image_shape to any backbone's config and non-image backbones
        # ignore it: check that it took effect.
        shapes = [tuple(t.shape[1:]) for t in model.inputs]
        if shapes != [tuple(input_shape)]:
            raise ValueError(
                f"KerasHub preset {label!r} does not take an image shape: its inputs are "
                f"{model_input_shape(model)}. Expected input_shape=None for it. "
                f"Received: input_shape={list(input_shape)}"
            )
    return model


def model_input_shape(model: keras.Model) -> str:
    """JSON of the model's input shapes: ``[32, 32, 3]`` for one input, an object by input
    name for several (``{"padding_mask": [null], "token_ids": [null]}``)."""
    inputs = model.inputs
    if len(inputs) == 1:
        return json.dumps(list(inputs[0].shape[1:]))
    return json.dumps({t.name: list(t.shape[1:]) for t in inputs}, sort_keys=True)

"""How decoded images (float32 RGB in [0, 255]) become the backbone's input.

Two kinds of preprocessing, both plain JSON in the Trainer's ``custom_config``:

- a ``keras.applications`` module name (``"mobilenet_v2"``): that module's
  ``preprocess_input``; what ``TrainerConfig`` picks from ``architecture`` when
  ``preprocessing`` is not given (the demo's behaviour);
- an explicit ``{"scale": s, "offset": o}``: ``image * scale + offset`` per channel, with
  ``s`` and ``o`` a number or 3 numbers (RGB), which is how KerasHub's ``ImageConverter``
  describes every preset's preprocessing (its ``scale`` and ``offset``). Shorthands:
  ``"none"`` (``scale=1, offset=0``: raw [0, 255]), ``"unit"`` (``[0, 1]``),
  ``"symmetric"`` (``[-1, 1]``, e.g. ViT presets) and ``"imagenet"`` (``[0, 1]`` then
  normalized by the ImageNet mean and standard deviation, e.g. KerasHub's ResNet presets).

>>> check_preprocessing("imagenet")["offset"]
[-2.1179039301310043, -2.0357142857142856, -1.8044444444444445]
>>> preprocess_fn({"scale": 1 / 255, "offset": 0.0})(images)  # images in [0, 1]
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = {
    "none": {"scale": 1.0, "offset": 0.0},
    "unit": {"scale": 1 / 255.0, "offset": 0.0},
    "symmetric": {"scale": 1 / 127.5, "offset": -1.0},
    "imagenet": {
        "scale": [1 / (255.0 * s) for s in IMAGENET_STD],
        "offset": [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)],
    },
}


def _is_factor(value: Any) -> bool:
    def number(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    if isinstance(value, (list, tuple)):
        return len(value) == 3 and all(number(x) for x in value)
    return number(value)


def check_preprocessing(value: str | dict) -> dict[str, Any]:
    """Canonical ``{"scale": ..., "offset": ...}`` of a mode name or an explicit dict.

    Raises:
        ValueError: an unknown mode, other keys, or a scale/offset that is neither a finite
            number nor 3 of them (a zero scale is refused: it would erase the image).
    """
    if isinstance(value, str) and value in MODES:
        return dict(MODES[value])
    ok = isinstance(value, dict) and set(value) == {"scale", "offset"}
    ok = ok and _is_factor(value["scale"]) and _is_factor(value["offset"])
    if ok:
        scale = value["scale"]
        ok = all(s != 0 for s in (scale if isinstance(scale, (list, tuple)) else [scale]))
    if not ok:
        raise ValueError(
            "Invalid trainer setting `preprocessing`. Expected one of "
            f"{sorted(MODES)} or {{'scale': s, 'offset': o}} (image * scale + offset on RGB "
            "in [0, 255]; s, o a number or 3 numbers, s != 0). "
            f"Received: preprocessing={value!r}"
        )
    return {k: list(v) if isinstance(v, (list, tuple)) else float(v) for k, v in value.items()}


def preprocess_fn(preprocessing: str | dict):
    """The function applied to decoded float32 images ``[batch, h, w, 3]`` in [0, 255].

    ``preprocessing`` is a ``keras.applications`` module name (``"mobilenet_v2"``) or a
    ``{"scale", "offset"}`` dict (see ``check_preprocessing``).
    """
    if isinstance(preprocessing, str):
        return getattr(keras.applications, preprocessing).preprocess_input
    canonical = check_preprocessing(preprocessing)
    scale = tf.constant(canonical["scale"], tf.float32)
    offset = tf.constant(canonical["offset"], tf.float32)

    def scale_and_offset(images):
        return images * scale + offset

    return scale_and_offset

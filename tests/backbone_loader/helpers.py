"""Small backbones and fakes for the BackboneLoader tests (built offline, nothing downloaded)."""

from __future__ import annotations

import functools

import keras

SHAPE = [32, 32, 3]
KWARGS = {"alpha": 0.35}


def mobilenet(alpha: float = 0.35) -> keras.Model:
    """The same backbone the loader builds for ("MobileNetV2", SHAPE, KWARGS), random weights."""
    return keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=tuple(SHAPE), alpha=alpha
    )


def recording_constructor(calls: list[dict]):
    """A stand-in for keras.applications.MobileNetV2 that records its arguments.

    ``weights="imagenet"`` needs a download, and these machines have no internet: the stand-in
    records the call and builds the same model with random weights instead.
    """
    real = keras.applications.MobileNetV2

    @functools.wraps(real)  # keeps the real signature, which `kwargs` is checked against
    def constructor(**kwargs):
        calls.append(dict(kwargs))
        return real(**dict(kwargs, weights=None))

    return constructor

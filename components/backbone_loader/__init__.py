"""BackboneLoader: build a headless ``keras.applications`` backbone, or load a KerasHub preset,
and publish it.

The building logic (``applications``, ``presets``) is plain Keras and imports no TFX;
``BackboneLoader`` (the TFX component) is imported lazily so that
``from backbone_regularizer.components.backbone_loader import build_backbone`` works without TFX.
"""

from backbone_regularizer.components.backbone_loader.applications import (
    build_backbone,
    load_weights_file,
    save_backbone,
)
from backbone_regularizer.components.backbone_loader.arguments import available_architectures
from backbone_regularizer.components.backbone_loader.presets import load_preset

__all__ = [
    "BackboneLoader",
    "available_architectures",
    "build_backbone",
    "load_preset",
    "load_weights_file",
    "save_backbone",
]


def __getattr__(name: str):
    if name == "BackboneLoader":
        from backbone_regularizer.components.backbone_loader.component import BackboneLoader

        return BackboneLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

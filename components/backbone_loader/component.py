"""BackboneLoader: the TFX component that produces the backbone Model artifact."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel_utils, standard_artifacts

from backbone_regularizer.components.backbone_loader import arguments, presets
from backbone_regularizer.components.backbone_loader import component_spec as cs
from backbone_regularizer.components.backbone_loader.executor import Executor


class BackboneLoader(base_component.BaseComponent):
    """Build a headless pre-trained backbone and publish it as a Model artifact.

    Two sources: a ``keras.applications`` model (``architecture``, built with
    ``include_top=False``) or a KerasHub preset (``preset``: a built-in name, a ``kaggle://``
    or ``hf://`` handle, or a local/``gs://``/``s3://`` directory written by
    ``backbone.save_to_preset(dir)``).

    Output ``backbone``: a ``Model`` artifact holding ``Format-Serving/model.keras``, with
    custom properties ``source``, ``weights_sha256``, ``parameter_count``, ``architecture``
    (the class name for a preset, e.g. ``ResNetBackbone``), ``input_shape`` and
    ``keras_version``; for a preset also ``preset`` and ``keras_hub_version``. It plugs into
    ``BackboneRegularizer(backbone=...)`` unchanged, and ``weights_sha256`` equals the
    regularizer's own checksum of its input.

    >>> loader = BackboneLoader("MobileNetV2", input_shape=[96, 96, 3], kwargs={"alpha": 0.35})
    >>> loader = BackboneLoader(preset="gs://bucket/presets/resnet_18_imagenet")
    >>> regularizer = BackboneRegularizer(
    ...     backbone=loader.outputs["backbone"], spec=RegularizationSpec(l2=1e-4)
    ... )
    """

    SPEC_CLASS = cs.BackboneLoaderSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        architecture: str | None = None,
        input_shape: Sequence[int | None] | str | None = None,
        weights: str | None = cs.DEFAULT_WEIGHTS,
        pooling: str | None = None,
        kwargs: dict[str, Any] | str | None = None,
        preset: str | None = None,
    ):
        """Build the component; every argument error surfaces here, at pipeline-build time.

        Args:
            architecture: a ``keras.applications`` model name, e.g. ``"MobileNetV2"``,
                ``"ResNet50"``, ``"EfficientNetB0"``, ``"ConvNeXtTiny"``. Exclusive with
                ``preset``.
            input_shape: ``(height, width, channels)`` as a sequence or JSON (``"[32, 32, 3]"``);
                height and width may be ``None``. Required with ``architecture`` (whether it is
                large enough is checked when the executor builds the model). With ``preset``,
                optional: overrides an image backbone's ``image_shape``.
            weights: with ``architecture``: ``"imagenet"`` (the default; downloaded by Keras at
                run time: needs network access), ``"none"``/``None`` (random initialization),
                or the URI of a weights file ending in ``.weights.h5`` (or legacy
                ``.h5``/``.hdf5``), read with ``tfx.dsl.io.fileio`` (``gs://`` works). With
                ``preset``: ``"preset"`` (the default: its own weights) or ``"none"``. The
                value is recorded in ML Metadata.
            pooling: ``None``, ``"avg"`` or ``"max"``, as in ``keras.applications`` (not
                with ``preset``: the Trainer's head pools KerasHub outputs).
            kwargs: further constructor arguments, a dict or JSON object
                (``{"alpha": 0.35}``), checked against the constructor's signature (not with
                ``preset``).
            preset: a KerasHub preset for ``keras_hub.models.Backbone.from_preset``: a
                built-in name (``"resnet_18_imagenet"``; downloaded at run time from Kaggle
                Models), a ``kaggle://``/``hf://``/``modelscope://`` handle, or the path/URI of
                a directory written by ``backbone.save_to_preset(dir)`` (``gs://`` and
                ``s3://`` are copied with ``tfx.dsl.io.fileio``).

        Raises:
            ValueError: neither or both of ``architecture`` and ``preset``; unknown
                architecture or built-in preset name (the message suggests close names); an
                ``input_shape`` that is not 3 positive ints (or missing with
                ``architecture``); ``pooling`` not None/avg/max (or given with ``preset``);
                ``weights`` neither "imagenet", "none" nor a weights-file path (with
                ``preset``: neither "preset" nor "none"); or ``kwargs`` that is not a JSON
                object, names a parameter the constructor does not have (or one the loader
                sets: include_top, weights, input_shape, pooling, ...), gives a value of the
                wrong kind, or is given with ``preset``.
        """
        if architecture is None and preset is None:
            raise ValueError(
                "Invalid value for argument `architecture`. Expected a keras.applications class "
                "name such as 'MobileNetV2', or a KerasHub `preset` instead. "
                "Received: architecture=None, preset=None"
            )
        if architecture is not None and preset is not None:
            raise ValueError(
                "Expected one backbone source: `architecture` (keras.applications) or `preset` "
                f"(KerasHub), not both. Received: architecture={architecture!r}, "
                f"preset={preset!r}"
            )
        if preset is not None:
            properties = _preset_properties(preset, input_shape, weights, pooling, kwargs)
        else:
            if input_shape is None:
                raise ValueError(
                    "Invalid value for argument `input_shape`. Expected (height, width, "
                    "channels) for a keras.applications backbone, e.g. [32, 32, 3]. "
                    "Received: input_shape=None"
                )
            architecture = arguments.check_architecture(architecture)
            shape = arguments.parse_input_shape(input_shape)
            if weights == cs.DEFAULT_WEIGHTS:
                weights = arguments.IMAGENET
            properties = {
                cs.ARCHITECTURE_KEY: architecture,
                cs.WEIGHTS_KEY: arguments.check_weights(weights),
                cs.INPUT_SHAPE_KEY: arguments.input_shape_json(shape),
                cs.POOLING_KEY: arguments.check_pooling(pooling) or arguments.NONE,
                cs.KWARGS_KEY: arguments.kwargs_json(arguments.parse_kwargs(architecture, kwargs)),
            }
        super().__init__(
            spec=cs.BackboneLoaderSpec(
                **properties,
                **{cs.BACKBONE_KEY: channel_utils.as_channel([standard_artifacts.Model()])},
            )
        )


_NOT_WITH_PRESET = {
    "pooling": "the Trainer's head pools the backbone's output",
    "kwargs": "the preset defines the architecture",
}


def _preset_properties(preset, input_shape, weights, pooling, kwargs) -> dict[str, str]:
    for name, value in (("pooling", pooling), ("kwargs", kwargs)):
        if value not in (None, "", {}):
            raise ValueError(
                f"Invalid argument `{name}` with a KerasHub preset. Expected it unset: "
                f"{_NOT_WITH_PRESET[name]}. Received: {name}={value!r}"
            )
    properties = {
        cs.PRESET_KEY: presets.check_preset(preset),
        cs.WEIGHTS_KEY: presets.check_weights(
            presets.PRESET_WEIGHTS if weights == cs.DEFAULT_WEIGHTS else weights
        ),
    }
    if input_shape is not None:
        shape = arguments.parse_input_shape(input_shape)
        properties[cs.INPUT_SHAPE_KEY] = arguments.input_shape_json(shape)
    return properties

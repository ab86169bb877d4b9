"""BackboneLoader: the TFX component that produces the backbone Model artifact."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel_utils, standard_artifacts

from components.backbone_loader import applications
from components.backbone_loader import component_spec as cs
from components.backbone_loader.executor import Executor


class BackboneLoader(base_component.BaseComponent):
    """Build a headless ``keras.applications`` backbone and publish it as a Model artifact.

    Output ``backbone``: a ``Model`` artifact holding ``Format-Serving/model.keras``
    (``include_top=False``), with custom properties ``source``, ``weights_sha256``,
    ``parameter_count``, ``architecture``, ``input_shape`` and ``keras_version``. It plugs
    into ``BackboneRegularizer(backbone=...)`` unchanged, and ``weights_sha256`` equals the
    regularizer's own checksum of its input.

    >>> loader = BackboneLoader("MobileNetV2", input_shape=[96, 96, 3], kwargs={"alpha": 0.35})
    >>> regularizer = BackboneRegularizer(
    ...     backbone=loader.outputs["backbone"], spec=RegularizationSpec(l2=1e-4)
    ... )
    """

    SPEC_CLASS = cs.BackboneLoaderSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        architecture: str,
        input_shape: Sequence[int | None] | str,
        weights: str | None = applications.IMAGENET,
        pooling: str | None = None,
        kwargs: dict[str, Any] | str | None = None,
    ):
        """Build the component; every argument error surfaces here, at pipeline-build time.

        Args:
            architecture: a ``keras.applications`` model name, e.g. ``"MobileNetV2"``,
                ``"ResNet50"``, ``"EfficientNetB0"``, ``"ConvNeXtTiny"``.
            input_shape: ``(height, width, channels)`` as a sequence or JSON (``"[32, 32, 3]"``);
                height and width may be ``None``. Whether it is large enough for the
                architecture is checked when the executor builds the model.
            weights: ``"imagenet"`` (downloaded by Keras at run time: needs network access),
                ``"none"``/``None`` (random initialization), or the URI of a weights file
                ending in ``.weights.h5`` (or legacy ``.h5``/``.hdf5``), read with
                ``tfx.dsl.io.fileio`` (``gs://`` works). The URI is recorded in ML Metadata.
            pooling: ``None``, ``"avg"`` or ``"max"``, as in ``keras.applications``.
            kwargs: further constructor arguments, a dict or JSON object
                (``{"alpha": 0.35}``), checked against the constructor's signature.

        Raises:
            ValueError: unknown architecture (the message suggests close names), an
                ``input_shape`` that is not 3 positive ints, ``pooling`` not None/avg/max,
                ``weights`` neither "imagenet", "none" nor a weights-file path, or ``kwargs``
                that is not a JSON object, names a parameter the constructor does not have
                (or one the loader sets: include_top, weights, input_shape, pooling, ...), or
                gives a value of the wrong kind.
        """
        architecture = applications.check_architecture(architecture)
        shape = applications.parse_input_shape(input_shape)
        weights = applications.check_weights(weights)
        pooling = applications.check_pooling(pooling)
        extra = applications.parse_kwargs(architecture, kwargs)
        super().__init__(
            spec=cs.BackboneLoaderSpec(
                **{
                    cs.ARCHITECTURE_KEY: architecture,
                    cs.WEIGHTS_KEY: weights,
                    cs.INPUT_SHAPE_KEY: applications.input_shape_json(shape),
                    cs.POOLING_KEY: pooling or applications.NONE,
                    cs.KWARGS_KEY: applications.kwargs_json(extra),
                    cs.BACKBONE_KEY: channel_utils.as_channel([standard_artifacts.Model()]),
                }
            )
        )

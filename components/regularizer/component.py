"""BackboneRegularizer: the TFX component between backbone loading and the Trainer."""

from __future__ import annotations

from collections.abc import Sequence

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel_utils, standard_artifacts

from backbone_regularizer.components.regularizer import component_spec as cs
from backbone_regularizer.components.regularizer.custom_modules import (
    check_module_names,
    modules_json,
)
from backbone_regularizer.components.regularizer.executor import Executor
from backbone_regularizer.components.regularizer.spec import RegularizationSpec


class BackboneRegularizer(base_component.BaseComponent):
    """Attach L1/L2 regularizers to a pre-trained Keras backbone, verify them, publish it.

    Input ``backbone``: a ``Model`` artifact holding ``Format-Serving/model.keras``.
    Output ``model``: a ``Model`` artifact with ``Format-Serving/model.keras`` (original weights,
    regularizers live and serialized) and ``regularization_report.json``; it plugs into
    ``Trainer(base_model=...)`` unchanged. Any failed check fails the execution and nothing is
    published.

    >>> regularizer = BackboneRegularizer(
    ...     backbone=loader.outputs["backbone"],
    ...     spec=RegularizationSpec(l2=1e-4, exclude=("Conv1",)),
    ...     custom_modules=["my_project.layers"],  # optional: registers custom classes
    ... )
    >>> trainer = Trainer(base_model=regularizer.outputs["model"], ...)
    """

    SPEC_CLASS = cs.BackboneRegularizerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        backbone: types.BaseChannel,
        spec: RegularizationSpec,
        safe_mode: bool = True,
        custom_modules: Sequence[str] | None = None,
    ):
        """Build the component; every argument error surfaces here, at pipeline-build time.

        Args:
            backbone: channel of ``standard_artifacts.Model`` with ``Format-Serving/model.keras``.
            spec: what to regularize and how to freeze (validated on construction).
            safe_mode: load the backbone with Keras ``safe_mode=True``. Pass ``False`` only
                for a trusted model with Lambda layers; the choice is recorded in ML Metadata.
            custom_modules: dotted names of modules to import before loading, e.g.
                ``["my_project.layers"]``: they register the model's custom classes
                (``keras.saving.register_keras_serializable``). They must be importable
                where the executor runs (in the image on Kubeflow). ``keras_hub`` is imported
                automatically when the model holds KerasHub classes. ``safe_mode`` is
                unaffected.

        Raises:
            TypeError: ``backbone`` is not a channel of Model artifacts, ``spec`` is not a
                RegularizationSpec, or ``safe_mode`` is not a bool.
            ValueError: ``custom_modules`` holds something that is not a module name.
        """
        if not isinstance(backbone, types.BaseChannel) or backbone.type != standard_artifacts.Model:
            raise TypeError(
                "Expected `backbone` to be a channel of standard_artifacts.Model. "
                f"Received: {backbone!r}"
            )
        if not isinstance(spec, RegularizationSpec):
            raise TypeError(
                f"Expected `spec` to be a RegularizationSpec. Received: {type(spec).__name__}"
            )
        if not isinstance(safe_mode, bool):
            raise TypeError(f"Expected `safe_mode` to be a bool. Received: {safe_mode!r}")
        properties = {cs.SPEC_KEY: spec.to_json(), cs.SAFE_MODE_KEY: int(safe_mode)}
        if check_module_names(custom_modules):
            properties[cs.CUSTOM_MODULES_KEY] = modules_json(custom_modules)
        super().__init__(
            spec=cs.BackboneRegularizerSpec(
                **properties,
                **{
                    cs.BACKBONE_KEY: backbone,
                    cs.MODEL_KEY: channel_utils.as_channel([standard_artifacts.Model()]),
                },
            )
        )

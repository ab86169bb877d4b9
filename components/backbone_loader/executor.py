"""Thin TFX adapter: exec properties in, ``build_backbone`` + ``save_backbone``, artifact out."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import keras
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

from backbone_regularizer.components import model_artifact
from backbone_regularizer.components.backbone_loader import applications, arguments, presets
from backbone_regularizer.components.backbone_loader import component_spec as cs
from backbone_regularizer.components.provenance_step import recorded


def _copy_weights_in(uri: str, local_dir: str) -> str:
    if not fileio.exists(uri):
        raise FileNotFoundError(f"Expected a weights file. Received: weights={uri!r} (missing)")
    # Keep the file name: Keras picks the weights format from its suffix.
    local = os.path.join(local_dir, os.path.basename(uri.rstrip("/")))
    fileio.copy(uri, local, overwrite=True)
    return local


class Executor(base_executor.BaseExecutor):
    """Builds the backbone with plain Keras and publishes ``Format-Serving/model.keras``."""

    @recorded("BackboneLoader")
    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        output = artifact_utils.get_single_instance(output_dict[cs.BACKBONE_KEY])
        if exec_properties.get(cs.PRESET_KEY):
            self._load_preset(output, exec_properties)
            return
        architecture = exec_properties[cs.ARCHITECTURE_KEY]
        weights = arguments.check_weights(exec_properties[cs.WEIGHTS_KEY])
        input_shape = arguments.parse_input_shape(exec_properties[cs.INPUT_SHAPE_KEY])
        is_file = weights not in (arguments.IMAGENET, arguments.NONE)
        with tempfile.TemporaryDirectory(prefix="backbone-loader-") as tmp:
            local_weights = _copy_weights_in(weights, tmp) if is_file else None
            logging.info("BackboneLoader: building %s (weights=%s)", architecture, weights)
            model = applications.build_backbone(
                architecture,
                arguments.NONE if is_file else weights,
                input_shape,
                pooling=exec_properties.get(cs.POOLING_KEY),
                kwargs=exec_properties.get(cs.KWARGS_KEY),
            )
            if local_weights:
                applications.load_weights_file(model, local_weights, label=weights)
            digest = _publish(model, tmp, output.uri)
        output.set_string_custom_property(
            cs.PROP_SOURCE, arguments.describe_source(architecture, weights)
        )
        _set_properties(output, model, digest, architecture)
        output.set_string_custom_property(
            cs.PROP_INPUT_SHAPE, arguments.input_shape_json(input_shape)
        )

    def _load_preset(self, output: types.Artifact, exec_properties: dict[str, Any]) -> None:
        preset = exec_properties[cs.PRESET_KEY]
        weights = presets.check_weights(exec_properties[cs.WEIGHTS_KEY])
        shape = exec_properties.get(cs.INPUT_SHAPE_KEY)
        shape = arguments.parse_input_shape(shape) if shape else None
        with tempfile.TemporaryDirectory(prefix="backbone-loader-") as tmp:
            local = preset
            if presets.preset_kind(preset) == presets.URI:
                # Copy with fileio (gs://, s3://) rather than let KerasHub cache the files
                # under ~/.keras by URI, where a changed preset would never be seen again.
                if not fileio.isdir(preset):
                    raise FileNotFoundError(
                        "Expected a KerasHub preset directory (written by "
                        f"`backbone.save_to_preset(dir)`). Received: preset={preset!r} (missing)"
                    )
                local = os.path.join(tmp, "preset")
                io_utils.copy_dir(preset, local)
            logging.info("BackboneLoader: KerasHub preset %s (weights=%s)", preset, weights)
            model = presets.load_preset(local, weights, shape, label=preset)
            digest = _publish(model, tmp, output.uri)
        import keras_hub

        output.set_string_custom_property(cs.PROP_SOURCE, presets.describe_preset(preset, weights))
        _set_properties(output, model, digest, type(model).__name__)
        output.set_string_custom_property(cs.PROP_INPUT_SHAPE, presets.model_input_shape(model))
        output.set_string_custom_property(cs.PROP_PRESET, preset)
        output.set_string_custom_property(cs.PROP_KERAS_HUB_VERSION, keras_hub.__version__)


def _publish(model: keras.Model, tmp: str, output_uri: str) -> str:
    """Save ``model`` to ``<output_uri>/Format-Serving/model.keras``; return its weights' SHA."""
    local_model = os.path.join(tmp, "out", model_artifact.MODEL_FILE)
    digest = applications.save_backbone(model, local_model)
    model_artifact.publish(output_uri, local_model)
    logging.info("BackboneLoader: published %s (weights_sha256=%s)", output_uri, digest)
    return digest


def _set_properties(output, model: keras.Model, digest: str, architecture: str) -> None:
    output.set_string_custom_property(cs.PROP_WEIGHTS_SHA256, digest)
    output.set_int_custom_property(cs.PROP_PARAMETER_COUNT, int(model.count_params()))
    output.set_string_custom_property(cs.PROP_ARCHITECTURE, architecture)
    output.set_string_custom_property(cs.PROP_KERAS_VERSION, keras.__version__)

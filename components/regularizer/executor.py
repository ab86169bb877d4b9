"""Thin TFX adapter: artifact URIs in, ``regularize_file`` on local copies, artifacts out."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import path_utils

from backbone_regularizer.components.provenance_step import recorded
from backbone_regularizer.components.regularizer import component_spec as cs
from backbone_regularizer.components.regularizer.custom_modules import (
    check_module_names,
    modules_json,
)
from backbone_regularizer.components.regularizer.spec import RegularizationSpec
from backbone_regularizer.components.regularizer.workflow import regularize_file, report_path_for


def _copy_in(uri: str, local: str) -> None:
    if not fileio.exists(uri):
        raise FileNotFoundError(
            f"Expected the backbone artifact to hold {cs.MODEL_FILE} under Format-Serving. "
            f"Received: no file at {uri!r}"
        )
    fileio.copy(uri, local, overwrite=True)


def _publish(local_model: str, local_report: str, output_uri: str) -> None:
    serving = path_utils.serving_model_dir(output_uri)
    fileio.makedirs(serving)
    fileio.copy(local_model, os.path.join(serving, cs.MODEL_FILE), overwrite=True)
    fileio.copy(local_report, os.path.join(output_uri, cs.REPORT_FILE), overwrite=True)


class Executor(base_executor.BaseExecutor):
    """Runs the plain-Keras workflow; fails the execution on any failed check."""

    @recorded("BackboneRegularizer")
    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        backbone = artifact_utils.get_single_instance(input_dict[cs.BACKBONE_KEY])
        output = artifact_utils.get_single_instance(output_dict[cs.MODEL_KEY])
        spec = RegularizationSpec.from_json(exec_properties[cs.SPEC_KEY])
        safe_mode = bool(int(exec_properties.get(cs.SAFE_MODE_KEY, 1)))
        custom_modules = check_module_names(exec_properties.get(cs.CUSTOM_MODULES_KEY))
        source = os.path.join(path_utils.serving_model_dir(backbone.uri), cs.MODEL_FILE)
        with tempfile.TemporaryDirectory(prefix="backbone-regularizer-") as tmp:
            local_src = os.path.join(tmp, "backbone.keras")
            local_dst = os.path.join(tmp, "out", cs.MODEL_FILE)
            logging.info("BackboneRegularizer: copying %s", source)
            _copy_in(source, local_src)
            report = regularize_file(
                local_src, local_dst, spec, safe_mode=safe_mode, custom_modules=custom_modules
            )
            logging.info(
                "BackboneRegularizer: %d weights regularized, %d skipped, all checks passed",
                len(report.regularized),
                len(report.skipped),
            )
            _publish(local_dst, str(report_path_for(local_dst)), output.uri)
        counts = report.counts
        output.set_int_custom_property(cs.PROP_REGULARIZED, counts["regularized"])
        output.set_int_custom_property(cs.PROP_REGULARIZED_FROZEN, counts["regularized_frozen"])
        output.set_int_custom_property(cs.PROP_SKIPPED, counts["skipped"])
        output.set_string_custom_property(cs.PROP_WEIGHTS_SHA256, report.baseline.weights_sha256)
        output.set_float_custom_property(cs.PROP_PENALTY, report.penalty["total_in_loss"])
        output.set_string_custom_property(cs.PROP_REGULARIZER, report.regularizer_summary)
        output.set_int_custom_property(cs.PROP_VALIDATION_PASSED, int(report.passed))
        output.set_int_custom_property(cs.PROP_SAFE_MODE, int(safe_mode))
        output.set_string_custom_property(cs.PROP_CUSTOM_MODULES, modules_json(custom_modules))
        output.set_string_custom_property(cs.PROP_KERAS_VERSION, report.versions["keras"])
        output.set_string_custom_property(cs.PROP_TF_VERSION, report.versions["tensorflow"])

"""Thin TFX adapter: artifact URIs in, ``regularize_file`` on local copies, artifacts out."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from backbone_regularizer.components import model_artifact
from backbone_regularizer.components.provenance_step import recorded
from backbone_regularizer.components.regularizer import component_spec as cs
from backbone_regularizer.components.regularizer.custom_modules import (
    check_module_names,
    modules_json,
)
from backbone_regularizer.components.regularizer.spec import RegularizationSpec
from backbone_regularizer.components.regularizer.workflow import regularize_file, report_path_for


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
        serving = model_artifact.serving_dir(backbone.uri)
        with tempfile.TemporaryDirectory(prefix="backbone-regularizer-") as tmp:
            local_dst = os.path.join(tmp, "out", model_artifact.MODEL_FILE)
            logging.info("BackboneRegularizer: copying %s", model_artifact.model_uri(serving))
            local_src = model_artifact.fetch_model(serving, tmp, role="backbone")
            report = regularize_file(
                local_src, local_dst, spec, safe_mode=safe_mode, custom_modules=custom_modules
            )
            logging.info(
                "BackboneRegularizer: %d weights regularized, %d skipped, all checks passed; "
                "file format %s",
                len(report.regularized),
                len(report.skipped),
                report.file["format"],
            )
            model_artifact.publish(output.uri, local_dst, report_path_for(local_dst))
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

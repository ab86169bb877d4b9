"""``Evaluator``: TFX's Evaluator whose per-class guard requires the production model's classes.

The guard itself is static and compiled into the pipeline (``guard.class_guard`` on the label
slices). Which classes the production model knew is known only at run time: this executor reads
them from the ``baseline_model`` artifact (``LatestPushedModel`` records ``label_map`` and
``compares_production`` there) and names each as a required slice (``guard.require_classes``)
before running TFX's executor. Nothing else changes; on a first run or when the vocabulary grew
(the baseline is the candidate itself) the eval config is used as compiled.

Same inputs, outputs, parameters and node id ("Evaluator") as ``tfx.components.Evaluator``.
"""

from __future__ import annotations

from typing import Any

import tensorflow_model_analysis as tfma
from absl import logging
from tfx import types
from tfx.components import Evaluator as TfxEvaluator
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from backbone_regularizer.components.image_ingestion import labels as vocabulary
from backbone_regularizer.components.image_ingestion.images import LABEL_KEY
from backbone_regularizer.components.latest_pushed import guard
from backbone_regularizer.components.latest_pushed.component import (
    BASELINE_LABEL_MAP,
    COMPARES_PRODUCTION,
)

BASELINE_MODEL_KEY = standard_component_specs.BASELINE_MODEL_KEY
EVAL_CONFIG_KEY = standard_component_specs.EVAL_CONFIG_KEY


def production_classes(baseline: list[types.Artifact] | None) -> list[int]:
    """The class indices the production model knew, or [] when the baseline is not it."""
    if not baseline or not baseline[0].get_int_custom_property(COMPARES_PRODUCTION):
        return []
    text = baseline[0].get_string_custom_property(BASELINE_LABEL_MAP)
    return sorted(vocabulary.from_json(text, BASELINE_LABEL_MAP).values())


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor; the per-class guard requires every production class."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        classes = production_classes(input_dict.get(BASELINE_MODEL_KEY))
        text = exec_properties.get(EVAL_CONFIG_KEY)
        if classes and text:
            config = proto_utils.json_to_proto(text, tfma.EvalConfig())
            if guard.has_guard(config, LABEL_KEY):
                config = guard.require_classes(config, LABEL_KEY, classes)
                logging.info("Evaluator: the per-class guard requires classes %s", classes)
                exec_properties = {
                    **exec_properties,
                    EVAL_CONFIG_KEY: proto_utils.proto_to_json(config),
                }
        super().Do(input_dict, output_dict, exec_properties)


class Evaluator(TfxEvaluator):
    """TFX's Evaluator; its per-class guard also requires the production model's classes."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

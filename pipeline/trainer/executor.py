"""The pipeline's Trainer executor: TFX's ``GenericExecutor``, told the label vocabulary.

A ``run_fn`` sees ``fn_args``, not the Examples artifact, so it cannot read the vocabulary
ImageExampleGen recorded there (``label_map``). This executor reads it, puts ``labels`` and
``num_classes`` into the ``custom_config`` the ``run_fn`` receives, runs TFX's executor, then
checks the exported ``label_map.json`` against the vocabulary and records it on the output
Model artifact (custom property ``label_map``). The head's size is the vocabulary's: a
configured ``num_classes`` that differs fails the run before training.
"""

from __future__ import annotations

from typing import Any

from absl import logging
from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils, path_utils

from backbone_regularizer.components.image_ingestion import labels as vocabulary
from backbone_regularizer.components.image_ingestion.images import label_map_to_json
from backbone_regularizer.components.image_ingestion.report import LABEL_MAP_PROPERTY
from backbone_regularizer.pipeline.trainer.export import LABEL_MAP_FILE, read_label_map

EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
MODEL_KEY = standard_component_specs.MODEL_KEY
CUSTOM_CONFIG_KEY = standard_component_specs.CUSTOM_CONFIG_KEY


def examples_label_map(examples: list[types.Artifact]) -> dict[str, int] | None:
    """The label vocabulary recorded on the Examples artifact(s), or None without one.

    Raises:
        ValueError: the artifacts record different vocabularies, or an invalid one.
    """
    found = {
        label_map_to_json(vocabulary.from_json(text, f"{a.uri} {LABEL_MAP_PROPERTY}"))
        for a in examples
        if (text := a.get_string_custom_property(LABEL_MAP_PROPERTY))
    }
    if len(found) > 1:
        raise ValueError(
            "Expected one label vocabulary across the Trainer's Examples. "
            f"Received: {sorted(found)}"
        )
    return vocabulary.from_json(found.pop()) if found else None


def with_labels(custom_config: dict[str, Any], label_map: dict[str, int]) -> dict[str, Any]:
    """``custom_config`` with ``labels`` and ``num_classes`` from the vocabulary.

    Raises:
        ValueError: the config's own ``num_classes`` or ``labels`` disagree with it.
    """
    names = vocabulary.names(label_map)
    given = custom_config.get("labels")
    if given is not None and list(given) != names:
        raise ValueError(
            "Invalid trainer setting `labels`. Expected the Examples' label vocabulary "
            f"{names} (or no value). Received: labels={list(given)}"
        )
    classes = custom_config.get("num_classes")
    if classes is not None and classes != len(names):
        raise ValueError(
            f"Invalid trainer setting `num_classes`. Expected {len(names)}, the size of the "
            f"Examples' label vocabulary {names}, or no value (the head follows the "
            f"vocabulary; leave it out with grow_labels). Received: num_classes={classes!r}"
        )
    return {**custom_config, "labels": names, "num_classes": len(names)}


class Executor(trainer_executor.GenericExecutor):
    """TFX's Trainer executor with the Examples' label vocabulary passed to ``run_fn``."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Runs ``run_fn`` with ``labels``/``num_classes`` set; records the model's label map.

        Raises:
            ValueError: see ``with_labels`` and ``examples_label_map``.
            RuntimeError: the exported ``label_map.json`` is not the vocabulary.
        """
        label_map = examples_label_map(input_dict[EXAMPLES_KEY])
        if label_map is None:
            logging.warning(
                "Trainer: the Examples record no %r; the run_fn's custom_config decides the "
                "classes.",
                LABEL_MAP_PROPERTY,
            )
            super().Do(input_dict, output_dict, exec_properties)
            return
        config = json_utils.loads(exec_properties.get(CUSTOM_CONFIG_KEY) or "null") or {}
        properties = {
            **exec_properties,
            CUSTOM_CONFIG_KEY: json_utils.dumps(with_labels(config, label_map)),
        }
        super().Do(input_dict, output_dict, properties)
        model = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
        exported = read_label_map(path_utils.serving_model_path(model.uri))
        if exported != label_map:
            raise RuntimeError(
                f"Expected the run_fn to export {LABEL_MAP_FILE} = {label_map} (the Examples' "
                f"vocabulary). Received: {exported}"
            )
        model.set_string_custom_property(LABEL_MAP_PROPERTY, label_map_to_json(label_map))

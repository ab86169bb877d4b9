"""LatestPushedModel: the production model to compare a candidate against, without a Resolver.

Open-source KFP cannot run Resolver nodes, so the baseline is found by a small component that
reads the push destination itself: the newest pushed SavedModel becomes the ``baseline`` Model
artifact. Before anything was pushed (first run) the candidate is its own baseline, so change
thresholds pass and only the absolute thresholds decide: the same meaning locally and on KFP.

The comparison runs only when the candidate's label map equals production's (the
``label_map.json`` beside each SavedModel; see ``comparison.decide``): otherwise the step fails,
naming both maps, and nothing is evaluated or pushed. A vocabulary that only grew, with
``grow_labels``, skips the comparison (the candidate is its own baseline) and says so.

No ``from __future__ import annotations`` here: TFX reads the @component type hints at runtime.
"""

import os

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types.standard_artifacts import Model
from tfx.utils import path_utils

from backbone_regularizer.components import model_artifact
from backbone_regularizer.components.image_ingestion.images import label_map_to_json
from backbone_regularizer.components.image_ingestion.labels import read_label_map_file
from backbone_regularizer.components.latest_pushed.comparison import decide
from backbone_regularizer.components.provenance_step import step

BASELINE_SOURCE = "baseline_source"
FIRST_RUN = "first_run"
COMPARES_PRODUCTION = "compares_production"  # int: the baseline is the production model
COMPARISON = "comparison"  # str: what the baseline is, and why
BASELINE_LABEL_MAP = "label_map"  # JSON: the baseline's label map


def latest_pushed_version(push_destination: str) -> str | None:
    """Newest version folder under ``push_destination`` that holds a SavedModel, or None.

    Pusher names versions by timestamp (integers), so the largest number is the newest.
    """
    if not fileio.exists(push_destination):
        return None
    versions = []
    for name in fileio.listdir(push_destination):
        name = name.rstrip("/")
        path = os.path.join(push_destination, name)
        if name.isdigit() and fileio.exists(os.path.join(path, model_artifact.SAVED_MODEL_FILE)):
            versions.append((int(name), path))
    return max(versions)[1] if versions else None


@component
def LatestPushedModel(  # noqa: N802 - TFX names components like classes
    model: InputArtifact[Model],
    baseline: OutputArtifact[Model],
    push_destination: Parameter[str],
    grow_labels: Parameter[int] = 0,
) -> None:
    """Copy the newest pushed model into ``baseline`` when its label map is the candidate's;
    the candidate itself on the first run or when the vocabulary grew (``grow_labels``: 1).

    Raises:
        ValueError: the label maps differ, or one model stores none (``comparison.decide``).
    """
    inputs, outputs = {"model": [model]}, {"baseline": [baseline]}
    parameters = {"push_destination": push_destination, "grow_labels": grow_labels}
    with step("latest_pushed_model", inputs, outputs, parameters, executor=__name__):
        pushed = latest_pushed_version(push_destination)
        candidate = path_utils.serving_model_path(model.uri)
        decision = decide(
            read_label_map_file(candidate),
            pushed,
            read_label_map_file(pushed) if pushed else None,
            bool(grow_labels),
        )
        source = pushed if decision.compares else candidate
        # Staged, then replaced: a retried step never leaves a mix of two copies.
        model_artifact.publish_folder(
            model_artifact.serving_dir(baseline.uri), source, last=model_artifact.SAVED_MODEL_FILE
        )
        first_run = pushed is None
        baseline.set_string_custom_property(
            BASELINE_SOURCE,
            "candidate (nothing pushed yet)"
            if first_run
            else source
            if decision.compares
            else "candidate (comparison skipped)",
        )
        baseline.set_int_custom_property(FIRST_RUN, int(first_run))
        baseline.set_int_custom_property(COMPARES_PRODUCTION, int(decision.compares))
        baseline.set_string_custom_property(COMPARISON, decision.reason)
        if decision.label_map is not None:
            baseline.set_string_custom_property(
                BASELINE_LABEL_MAP, label_map_to_json(decision.label_map)
            )

"""LatestPushedModel: the production model to compare a candidate against, without a Resolver.

Open-source KFP cannot run Resolver nodes, so the baseline is found by a small component that
reads the push destination itself: the newest pushed SavedModel becomes the ``baseline`` Model
artifact. Before anything was pushed (first run) the candidate is its own baseline, so change
thresholds pass and only the absolute thresholds decide: the same meaning locally and on KFP.

No ``from __future__ import annotations`` here: TFX reads the @component type hints at runtime.
"""

import os

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types.standard_artifacts import Model
from tfx.utils import io_utils, path_utils

from backbone_regularizer.components.provenance_step import step

BASELINE_SOURCE = "baseline_source"
FIRST_RUN = "first_run"


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
        if name.isdigit() and fileio.exists(os.path.join(path, "saved_model.pb")):
            versions.append((int(name), path))
    return max(versions)[1] if versions else None


@component
def LatestPushedModel(  # noqa: N802 - TFX names components like classes
    model: InputArtifact[Model],
    baseline: OutputArtifact[Model],
    push_destination: Parameter[str],
) -> None:
    """Copy the newest pushed model (or, on the first run, the candidate) into ``baseline``."""
    inputs, outputs = {"model": [model]}, {"baseline": [baseline]}
    parameters = {"push_destination": push_destination}
    with step("latest_pushed_model", inputs, outputs, parameters, executor=__name__):
        source = latest_pushed_version(push_destination)
        first_run = source is None
        if first_run:
            source = path_utils.serving_model_path(model.uri)
        io_utils.copy_dir(source, path_utils.serving_model_dir(baseline.uri))
        baseline.set_string_custom_property(
            BASELINE_SOURCE, "candidate (nothing pushed yet)" if first_run else source
        )
        baseline.set_int_custom_property(FIRST_RUN, int(first_run))

"""Importer -> BackboneRegularizer on LocalDagRunner; run as a subprocess by fault tests.

python -m tests.hardening.mini_pipeline ROOT MODEL_DIR [INCLUDE_REGEX]
"""

from __future__ import annotations

import os
import sys

from tfx import v1 as tfx

from backbone_regularizer.components.regularizer import BackboneRegularizer, RegularizationSpec

NAME = "mini"


def metadata_path(root: str) -> str:
    return os.path.join(root, "metadata.sqlite")


def build(root: str, model_dir: str, spec: RegularizationSpec) -> tfx.dsl.Pipeline:
    importer = tfx.dsl.Importer(
        source_uri=model_dir, artifact_type=tfx.types.standard_artifacts.Model
    ).with_id("backbone_importer")
    regularizer = BackboneRegularizer(backbone=importer.outputs["result"], spec=spec)
    return tfx.dsl.Pipeline(
        pipeline_name=NAME,
        pipeline_root=os.path.join(root, "pipeline"),
        components=[importer, regularizer],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path(root)
        ),
    )


def run(root: str, model_dir: str, spec: RegularizationSpec) -> None:
    tfx.orchestration.LocalDagRunner().run(build(root, model_dir, spec))


if __name__ == "__main__":
    include = tuple(sys.argv[3:4])
    run(sys.argv[1], sys.argv[2], RegularizationSpec(l2=1e-4, include=include))

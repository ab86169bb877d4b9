"""The cluster config, compiled once per session."""

from __future__ import annotations

import pytest

from tests.kubeflow.configs import IMAGE, ROOT, cluster_config


@pytest.fixture(scope="session")
def compiled(tmp_path_factory):
    """The cluster config compiled with the defaults (1 x nvidia.com/gpu on the Trainer)."""
    from backbone_regularizer.pipeline.kubeflow.compile import compile_pipeline

    path = tmp_path_factory.mktemp("compiled") / "pipeline.json"
    job = compile_pipeline(cluster_config(), path, image=IMAGE, pipeline_root=ROOT)
    return job, path

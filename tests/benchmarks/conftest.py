"""Shared by the benchmarks' smoke tests."""

import pytest

from backbone_regularizer.pipeline.demo import source_backbone


@pytest.fixture(scope="session")
def untrained_backbone(tmp_path_factory):
    """The demo's truncated MobileNetV2 shape, random weights (pre-training is not tested here)."""
    path = tmp_path_factory.mktemp("backbone") / "backbone.keras"
    backbone, _ = source_backbone.build_full(seed=0)
    source_backbone.truncate(backbone).save(path)
    return path

"""A backbone file rewritten in place is imported again (TFX's Importer, a real local run)."""

from __future__ import annotations

import pytest
from tfx.orchestration import metadata
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.pipeline import Pipeline

from backbone_regularizer.pipeline.config import BackboneConfig, PipelineConfig
from backbone_regularizer.pipeline.create_pipeline import IMPORTED_SHA256_PROPERTY, backbone_node
from backbone_regularizer.pipeline.lineage.queries import connect
from backbone_regularizer.pipeline.local_runner import imported_model_sha256


def _write_model(folder, payload: bytes) -> None:
    path = folder / "Format-Serving" / "model.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)


def _import_once(config: PipelineConfig, root, store_path) -> None:
    node = backbone_node(config, imported_model_sha256(config))
    LocalDagRunner().run(
        Pipeline(
            pipeline_name="importer-fingerprint",
            pipeline_root=str(root),
            components=[node],
            metadata_connection_config=metadata.sqlite_metadata_connection_config(str(store_path)),
        )
    )


def _imported(store_path) -> list[tuple[int, str]]:
    store = connect(str(store_path))
    return [
        (a.id, a.custom_properties[IMPORTED_SHA256_PROPERTY].string_value)
        for a in store.get_artifacts()
    ]


@pytest.mark.e2e
def test_a_rewritten_backbone_file_is_a_new_artifact(tmp_path):
    folder = tmp_path / "backbone"
    config = PipelineConfig(backbone=BackboneConfig(keras_file=str(folder)))
    store_path = tmp_path / "metadata.sqlite"

    _write_model(folder, b"first")
    _import_once(config, tmp_path / "root", store_path)
    _import_once(config, tmp_path / "root", store_path)
    first = _imported(store_path)
    assert len(first) == 1, "an unchanged file is reused, not imported twice"

    _write_model(folder, b"second")
    _import_once(config, tmp_path / "root", store_path)
    both = _imported(store_path)
    assert len(both) == 2
    assert both[0][1] != both[1][1]
    assert both[1][1] == imported_model_sha256(config)


def test_no_fingerprint_without_a_file(tmp_path):
    config = PipelineConfig(backbone=BackboneConfig(keras_file=str(tmp_path / "missing")))
    assert imported_model_sha256(config) is None
    architecture = PipelineConfig(backbone=BackboneConfig(architecture="MobileNetV2"))
    assert imported_model_sha256(architecture) is None

"""PipelineConfig: the demo defaults are valid; files with unknown keys or wrong types fail."""

import json

import pytest
import tensorflow_data_validation as tfdv

from backbone_regularizer.pipeline.config import DEMO_BACKBONE, PipelineConfig
from backbone_regularizer.pipeline.create_pipeline import create_pipeline
from tests.pipeline.test_pipeline_e2e import NODES


def test_defaults_are_the_demo_and_build_a_pipeline():
    config = PipelineConfig()
    assert config.trainer_config().num_classes == 5
    assert config.regularization_spec().l2_sp == 0.01
    assert config.trainer_config().head_init == "probe"
    # The demo's backbone is the pre-trained, truncated MobileNetV2 that demo_data saves.
    assert config.backbone.keras_file == DEMO_BACKBONE
    pipeline = create_pipeline(config)
    assert {c.id for c in pipeline.components} == NODES - {"BackboneLoader"} | {"backbone_importer"}


def test_keras_file_backbone_uses_an_importer(tmp_path):
    config = PipelineConfig.from_dict({"backbone": {"keras_file": str(tmp_path)}})
    ids = [c.id for c in create_pipeline(config).components]
    assert "backbone_importer" in ids and "BackboneLoader" not in ids


def test_file_round_trip(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"min_accuracy": 0.8, "trainer": {"num_classes": 3}}))
    config = PipelineConfig.from_file(path)
    assert config.min_accuracy == 0.8 and config.trainer_config().num_classes == 3
    assert PipelineConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "data, message",
    [
        ({"min_acuracy": 0.8}, "Unknown keys in config: \\['min_acuracy'\\]"),
        ({"min_accuracy": "high"}, "Invalid config `min_accuracy`"),
        ({"pipeline_name": "My_Pipeline"}, "Invalid config `pipeline_name`"),
        ({"backbone": {"arch": "X"}}, "Unknown keys in backbone"),
        ({"regularization": {"l2": -1}}, "Received: l2=-1"),
        ({"trainer": {"num_classes": 5, "epochs": 0}}, "Invalid trainer setting `epochs`"),
        ({"safe_mode": "yes"}, "Invalid config `safe_mode`"),
        ([1, 2], "Expected a JSON object"),
        ({"labels": ["a", "a"]}, "Invalid config `labels`. Expected unique class names"),
        ({"labels": ["a", "b"]}, "Invalid config `trainer.num_classes`. Expected 2"),
        ({"trainer": {"labels": ["a", "b"]}}, "Invalid config `trainer.labels`"),
        ({"span_window": 0}, "Invalid config `span_window`"),
        ({"span_window": 2, "span_pattern": None}, "Expected 1 when `span_pattern` is null"),
        ({"grow_labels": "yes"}, "Invalid config `grow_labels`"),
        ({"holdout": ""}, "Invalid config `holdout`"),
        ({"max_class_accuracy_drop": 2}, "Invalid config `max_class_accuracy_drop`"),
    ],
)
def test_invalid_configs(data, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig.from_dict(data)


def test_labels_window_holdout_and_guard(tmp_path):
    config = PipelineConfig.from_dict(
        {
            "labels": ["digit_5", "digit_6", "digit_7"],
            "span_window": "all",
            "holdout": str(tmp_path / "holdout"),
            "max_class_accuracy_drop": 0.05,
            "trainer": {"epochs": 2},  # num_classes follows the labels
        }
    )
    assert config.labels == ("digit_5", "digit_6", "digit_7")
    assert config.trainer_config().num_classes is None  # the Trainer takes it from the Examples
    assert config.locations()["holdout"] == str(tmp_path / "holdout")
    assert PipelineConfig.from_dict(config.to_dict()) == config
    built = {c.id: c for c in create_pipeline(config).components}
    options = json.loads(built["ImageExampleGen"].exec_properties["custom_config"])
    assert options["custom_config"]["value"] == {
        "span_pattern": "span-{SPAN}",
        "labels": ["digit_5", "digit_6", "digit_7"],
        "span_window": "all",
        "holdout": str(tmp_path / "holdout"),
    }
    assert json.loads(built["Evaluator"].exec_properties["example_splits"]) == ["eval", "holdout"]
    assert built["latest_pushed_model"].exec_properties["grow_labels"] == 0
    defaults = {c.id: c for c in create_pipeline(PipelineConfig()).components}
    assert json.loads(defaults["Evaluator"].exec_properties["example_splits"]) == ["eval"]


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        PipelineConfig.from_file(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="Expected JSON"):
        PipelineConfig.from_file(bad)


def test_locations_read_from_a_file_without_checking_the_rest(tmp_path):
    from backbone_regularizer.pipeline.config import local_folder_of, metadata_path_of

    assert metadata_path_of() == PipelineConfig().metadata_path
    assert local_folder_of() == PipelineConfig().path(PipelineConfig().root)
    path = tmp_path / "c.json"
    # An invalid trainer is not read: `lineage` and the log folder need the locations only.
    path.write_text(json.dumps({"root": "s3://b/run", "metadata": "m/x.sqlite", "trainer": 1}))
    assert metadata_path_of(path) == PipelineConfig().path("m/x.sqlite")
    assert local_folder_of(path) == PipelineConfig().path("m")
    path.write_text(json.dumps({"root": "s3://b/run"}))
    with pytest.raises(ValueError, match="Invalid config `metadata`. Expected a local sqlite"):
        local_folder_of(path)
    path.write_text("[1]")
    with pytest.raises(ValueError, match="Expected a JSON object"):
        metadata_path_of(path)
    with pytest.raises(FileNotFoundError, match="missing"):
        metadata_path_of(tmp_path / "none.json")


def test_statistics_use_sketches_so_memory_does_not_grow_with_the_images():
    # TFDV's exact top-k/uniques groups every distinct encoded image in memory (docs/scale-out.md).
    built = {c.id: c for c in create_pipeline(PipelineConfig()).components}
    options = tfdv.StatsOptions.from_json(
        built["StatisticsGen"].exec_properties["stats_options_json"]
    )
    assert options.use_sketch_based_topk_uniques is True

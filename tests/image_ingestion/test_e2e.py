"""End to end: ImageExampleGen -> StatisticsGen on LocalDagRunner, read back from ML Metadata."""

import json
import os

import pytest
import tensorflow_data_validation as tfdv
from tfx import v1 as tfx
from tfx.components.trainer import fn_args_utils
from tfx.orchestration import metadata
from tfx.types import standard_artifacts

from backbone_regularizer.components.image_ingestion import ImageExampleGen
from backbone_regularizer.pipeline.trainer.data import make_dataset
from tests.image_ingestion.folders import names_in_split, write_file, write_images


@pytest.mark.e2e
def test_pipeline_ingests_latest_span_and_every_reader_sees_every_shard(tmp_path, caplog):
    base = str(tmp_path / "pets")
    write_images(os.path.join(base, "span-1"), names_in_split("old", "train", 2))
    newest = (
        names_in_split("cat", "train", 3)
        + names_in_split("cat", "eval", 1)
        + names_in_split("dog", "train", 2)
        + names_in_split("dog", "eval", 1)
    )
    write_images(os.path.join(base, "span-2"), newest)
    write_file(os.path.join(base, "span-2", "dog", "broken.png"), b"not an image")
    write_file(os.path.join(base, "span-2", "cat", "notes.txt"), b"x")

    db = str(tmp_path / "metadata.sqlite")
    example_gen = ImageExampleGen(input_base=base, span_pattern="span-{SPAN}", shards_per_split=2)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="image-ingestion-e2e",
        pipeline_root=str(tmp_path / "root"),
        components=[example_gen, statistics_gen],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(db),
        enable_cache=False,
        # Two Beam worker processes for ImageExampleGen and StatisticsGen.
        beam_pipeline_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    )
    with caplog.at_level("INFO"):
        tfx.orchestration.LocalDagRunner().run(pipeline)
    assert "(shards_per_split=2, 2 Beam worker(s))" in caplog.text

    config = metadata.sqlite_metadata_connection_config(db)
    with metadata.Metadata(config) as store:
        [examples] = store.store.get_artifacts_by_type("Examples")
        [statistics] = store.store.get_artifacts_by_type("ExampleStatistics")
    props = examples.custom_properties
    assert props["span"].int_value == 2
    assert "num_files:9" in props["input_fingerprint"].string_value
    assert json.loads(props["label_map"].string_value) == {"cat": 0, "dog": 1}
    assert props["num_classes"].int_value == 2
    assert props["count_train"].int_value == 5
    assert props["count_eval"].int_value == 2
    assert props["unreadable_images"].int_value == 1
    assert props["skipped_non_image_files"].int_value == 1
    assert json.loads(examples.properties["split_names"].string_value) == ["train", "eval"]
    assert os.path.isdir(os.path.join(examples.uri, "Split-eval"))
    assert sorted(os.listdir(statistics.uri)) == ["Split-eval", "Split-train"]
    # Two shards per split, and the readers downstream see all of them: StatisticsGen, and the
    # Trainer's input pipeline over the file patterns TFX gives run_fn.
    for split, count in (("train", 5), ("eval", 2)):
        assert len(os.listdir(os.path.join(examples.uri, f"Split-{split}"))) == 2
        stats = tfdv.load_stats_binary(
            os.path.join(statistics.uri, f"Split-{split}", "FeatureStats.pb")
        )
        assert stats.datasets[0].num_examples == count
    artifact = standard_artifacts.Examples()
    artifact.uri = examples.uri
    artifact.split_names = examples.properties["split_names"].string_value
    fn_args = fn_args_utils.get_common_fn_args(
        {"examples": [artifact]},
        {"train_args": '{"splits": ["train"]}', "eval_args": '{"splits": ["eval"]}'},
    )
    dataset = make_dataset(fn_args.train_files, (8, 8), "mobilenet_v2", 2, training=False)
    assert sum(int(labels.shape[0]) for _, labels in dataset) == 5

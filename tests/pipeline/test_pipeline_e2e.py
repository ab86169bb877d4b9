"""The whole local pipeline on a reduced config, checked from ML Metadata (marked e2e)."""

import os

import pytest

from backbone_regularizer.components.latest_pushed.component import BASELINE_SOURCE, FIRST_RUN
from backbone_regularizer.components.regularizer import component_spec as reg
from backbone_regularizer.pipeline.config import BackboneConfig, PipelineConfig
from backbone_regularizer.pipeline.demo.data import write_target_span
from backbone_regularizer.pipeline.lineage.queries import connect, custom_properties, latest_run
from backbone_regularizer.pipeline.lineage.summary import collect, format_summary
from backbone_regularizer.pipeline.local_runner import STARTED, run_local

NODES = {
    "ImageExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ExampleValidator",
    "BackboneLoader",
    "BackboneRegularizer",
    "Trainer",
    "latest_pushed_model",
    "Evaluator",
    "Pusher",
}


def reduced_config(tmp_path) -> PipelineConfig:
    return PipelineConfig(
        pipeline_name="e2e-test",
        root=str(tmp_path / "run"),
        data_root=str(tmp_path / "images"),
        train_eval_ratio=(1, 1),
        backbone=BackboneConfig(weights="none"),
        regularization={"l2": 1e-4},
        trainer={"num_classes": 5, "epochs": 2, "batch_size": 16, "augment": False},
        min_accuracy=0.0,
        max_accuracy_drop=1.0,
        shards_per_split=2,
    )


def assert_steps_reported(events, nodes) -> None:
    """``run_local``'s ``on_step``: each node started then ended, with ML Metadata's state."""
    assert [(e.node, e.status) for e in events[::2]] == [(e.node, STARTED) for e in events[1::2]]
    assert [e.index for e in events[1::2]] == list(range(1, len(NODES) + 1))
    assert {e.total for e in events} == {len(NODES)}
    state = {"completed": "COMPLETE", "cached": "CACHED"}
    assert {e.node: state[e.status] for e in events[1::2]} == {n: r.state for n, r in nodes.items()}
    assert all(e.seconds >= 0 and e.error is None for e in events)


@pytest.mark.e2e
def test_full_pipeline_then_cached_then_new_span(tmp_path):
    config = reduced_config(tmp_path)
    write_target_span(tmp_path / "images", 1, per_class=12)

    events = []
    run_local(config, on_step=events.append)
    nodes = latest_run(connect(config.metadata_path), config.pipeline_name)
    assert {n: r.state for n, r in nodes.items()} == dict.fromkeys(NODES, "COMPLETE")
    assert_steps_reported(events, nodes)

    examples = custom_properties(nodes["ImageExampleGen"].outputs["examples"][0])
    assert examples["num_classes"] == 5 and examples["count_train"] + examples["count_eval"] == 60
    loader = custom_properties(nodes["BackboneLoader"].outputs["backbone"][0])
    regularized = custom_properties(nodes["BackboneRegularizer"].outputs[reg.MODEL_KEY][0])
    assert regularized[reg.PROP_VALIDATION_PASSED] == 1
    assert regularized[reg.PROP_REGULARIZED] == 52
    assert regularized[reg.PROP_WEIGHTS_SHA256] == loader["weights_sha256"]
    assert regularized[reg.PROP_REGULARIZER] == "L2(l2=0.0001)"
    baseline = custom_properties(nodes["latest_pushed_model"].outputs["baseline"][0])
    assert baseline[FIRST_RUN] == 1
    assert custom_properties(nodes["Evaluator"].outputs["blessing"][0])["blessed"] == 1
    pushed = custom_properties(nodes["Pusher"].outputs["pushed_model"][0])
    assert pushed["pushed"] == 1
    pushed_dir = pushed["pushed_destination"]
    assert os.path.exists(os.path.join(pushed_dir, "saved_model.pb"))
    assert os.path.exists(os.path.join(pushed_dir, "model.keras"))
    summary = collect(config)
    assert summary["training"]["batchnorm_statistics_unchanged"] == 104
    # Two shards per split, and the Evaluator counted the examples of both.
    examples_uri = nodes["ImageExampleGen"].outputs["examples"][0].uri
    assert len(os.listdir(os.path.join(examples_uri, "Split-eval"))) == 2
    assert summary["evaluation"]["metrics"]["candidate"]["example_count"] == examples["count_eval"]
    assert "blessed: True" in format_summary(summary)

    events = []
    run_local(config, on_step=events.append)  # nothing changed: every execution is reused
    nodes = latest_run(connect(config.metadata_path), config.pipeline_name)
    assert {n: r.state for n, r in nodes.items()} == dict.fromkeys(NODES, "CACHED")
    assert_steps_reported(events, nodes)

    write_target_span(tmp_path / "images", 2, per_class=12)  # new data arrives
    run_local(config)
    nodes = latest_run(connect(config.metadata_path), config.pipeline_name)
    states = {n: r.state for n, r in nodes.items()}
    assert states["ImageExampleGen"] == states["Trainer"] == "COMPLETE"
    assert states["BackboneLoader"] == states["BackboneRegularizer"] == "CACHED"
    assert custom_properties(nodes["ImageExampleGen"].outputs["examples"][0])["span"] == 2
    baseline = custom_properties(nodes["latest_pushed_model"].outputs["baseline"][0])
    assert baseline[FIRST_RUN] == 0
    assert baseline[BASELINE_SOURCE] == pushed_dir

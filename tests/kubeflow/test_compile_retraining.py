"""The compiled spec carries the label vocabulary, the span window, the holdout and the
per-class guard as plain parameters: no Resolver, nothing resolved at compile time."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from backbone_regularizer.pipeline.kubeflow.compile import compile_pipeline
from tests.kubeflow import pod
from tests.kubeflow.configs import IMAGE, ROOT, cluster_config

HOLDOUT = "gs://my-bucket/backbone-regularizer/holdout"


@pytest.fixture(scope="module")
def retraining(tmp_path_factory):
    config = cluster_config(
        labels=["digit_5", "digit_6"],
        grow_labels=True,
        span_window=3,
        holdout=HOLDOUT,
        max_class_accuracy_drop=0.05,
        trainer={"epochs": 1},
    )
    path = tmp_path_factory.mktemp("retraining") / "pipeline.json"
    return compile_pipeline(config, path, image=IMAGE, pipeline_root=ROOT)


def constant(job: dict, task: str, name: str):
    parameters = job["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"]["parameters"]
    return parameters[name]["runtimeValue"]["constant"]


def test_example_gen_gets_the_vocabulary_window_and_holdout(retraining):
    config = json.loads(constant(retraining, "ImageExampleGen", "custom_config"))
    assert config["custom_config"]["value"] == {
        "span_pattern": "span-{SPAN}",
        "labels": ["digit_5", "digit_6"],
        "grow_labels": True,
        "span_window": 3,
        "holdout": HOLDOUT,
    }
    # The driver still resolves one span (the newest); the executor reads the window.
    input_config = json.loads(constant(retraining, "ImageExampleGen", "input_config"))
    assert input_config["splits"] == [{"name": "single_split", "pattern": "span-{SPAN}/*/*"}]
    for label, executor in retraining["pipelineSpec"]["deploymentSpec"]["executors"].items():
        assert "resolver" not in executor, label


def test_evaluator_slices_by_label_and_span_and_guards_every_class(retraining):
    eval_config = json.loads(constant(retraining, "Evaluator", "eval_config"))
    assert eval_config["slicing_specs"] == [
        {},
        {"feature_keys": ["label"]},
        {"feature_keys": ["span"]},
    ]
    accuracy = eval_config["metrics_specs"][0]["metrics"][0]
    assert accuracy["class_name"] == "SparseCategoricalAccuracy"
    overall, per_class = accuracy["per_slice_thresholds"]
    assert overall["slicing_specs"] == [{}]
    assert per_class["slicing_specs"] == [{"feature_keys": ["label"]}]
    assert per_class["threshold"]["change_threshold"] == {
        "direction": "HIGHER_IS_BETTER",
        "absolute": -0.05,
    }
    assert json.loads(constant(retraining, "Evaluator", "example_splits")) == ["eval", "holdout"]
    # The production model's classes are required at run time, from the baseline artifact.
    args = pod.container(retraining, "Evaluator")["args"]
    executor = args[args.index("--executor_class_path") + 1]
    assert executor == "backbone_regularizer.components.latest_pushed.evaluator.Executor"


def test_baseline_step_gets_grow_labels_as_an_int(retraining):
    assert constant(retraining, "latest_pushed_model", "grow_labels") == 1
    definitions = pod.component(retraining, "latest_pushed_model")["inputDefinitions"]
    assert definitions["parameters"]["grow_labels"]["parameterType"] == "NUMBER_INTEGER"


def test_the_trainer_follows_the_vocabulary(retraining):
    custom = json.loads(constant(retraining, "Trainer", "custom_config"))
    assert custom["num_classes"] is None and custom["labels"] is None  # set from the Examples
    json_format.ParseDict(retraining["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())


def test_a_local_holdout_is_refused_on_kubeflow(tmp_path):
    with pytest.raises(ValueError, match="Invalid value for `config.holdout` on Kubeflow"):
        compile_pipeline(cluster_config(holdout="/data/holdout"), tmp_path / "p.json", IMAGE, ROOT)

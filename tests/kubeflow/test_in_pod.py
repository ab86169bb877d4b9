"""The compiled steps' exact commands, run here the way a KFP pod runs them (marked e2e).

Each test reads the compiled JSON, builds the ExecutorInput KFP substitutes for ``{{$}}``
(local URIs instead of gs://), runs the container command + args in a subprocess, and checks
the artifacts and the executor output file that KFP records in its ML Metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from backbone_regularizer.components.latest_pushed.component import (
    BASELINE_LABEL_MAP,
    BASELINE_SOURCE,
    COMPARES_PRODUCTION,
    FIRST_RUN,
)
from backbone_regularizer.components.regularizer import component_spec as reg
from backbone_regularizer.pipeline.config import BackboneConfig
from backbone_regularizer.pipeline.demo.data import write_target_span
from backbone_regularizer.pipeline.kubeflow.compile import compile_pipeline
from backbone_regularizer.pipeline.trainer.module import SUMMARY_FILE
from tests.kubeflow import pod
from tests.kubeflow.configs import IMAGE, cluster_config
from tests.trainer.tfrecords import write_split

SPLIT_NAMES = json.dumps(["train", "eval"])
LABEL_MAP = '{"ant":0,"bee":1}'  # the Examples' vocabulary (TINY_TRAINER: 2 classes)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The pipeline compiled on local paths (the escape hatch), read back from its JSON file."""
    root = tmp_path_factory.mktemp("kfp-in-pod")
    config = cluster_config(
        pipeline_name="in-pod",
        root=str(root / "run"),
        data_root=str(root / "images"),
        backbone=BackboneConfig(weights="none"),
        push_destination=str(root / "serving"),
        regularization={"l2": 1e-3},
        train_eval_ratio=(1, 1),
        beam_args=("--direct_running_mode=in_memory", "--direct_num_workers=1"),
        shards_per_split=2,
    )
    path = root / "pipeline.json"
    compile_pipeline(
        config, path, IMAGE, pipeline_root=str(root / "pipeline-root"), allow_local_paths=True
    )
    return json.loads(path.read_text()), root


def parse_executor_output(path: Path) -> None:
    json_format.Parse(path.read_text(), pipeline_spec_pb2.ExecutorOutput())


@pytest.mark.e2e
def test_regularizer_trainer_and_baseline_steps_run_in_pods(local):
    job, root = local
    backbone = root / "backbone"
    (backbone / "Format-Serving").mkdir(parents=True)
    keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.35
    ).save(backbone / "Format-Serving" / "model.keras")

    # BackboneRegularizer
    regularized = root / "regularized"
    output_file = root / "pods" / "regularizer" / "executor_output.json"
    invocation = pod.executor_input(
        job,
        "BackboneRegularizer",
        inputs={"backbone": (backbone, {})},
        outputs={"model": regularized},
        output_file=output_file,
    )
    output = pod.run(job, "BackboneRegularizer", invocation, cwd=root / "pods" / "cwd")
    parse_executor_output(output_file)
    assert (regularized / "Format-Serving" / reg.MODEL_FILE).is_file()
    report = json.loads((regularized / reg.REPORT_FILE).read_text())
    assert report["validation"]["passed"] is True
    regularized_meta = pod.output_metadata(output, reg.MODEL_KEY)
    # Custom properties survive the entrypoint: ints (as JSON numbers), floats, strings.
    assert regularized_meta[reg.PROP_REGULARIZED] == 52 == report["counts"]["regularized"]
    assert regularized_meta[reg.PROP_VALIDATION_PASSED] == 1
    assert regularized_meta[reg.PROP_SAFE_MODE] == 1
    assert isinstance(regularized_meta[reg.PROP_PENALTY], float)
    assert regularized_meta[reg.PROP_PENALTY] == pytest.approx(report["penalty"]["total_in_loss"])
    assert regularized_meta[reg.PROP_REGULARIZER] == "L2(l2=0.001)"
    assert regularized_meta[reg.PROP_WEIGHTS_SHA256] == report["checksums"]["weights_sha256"]
    assert regularized_meta[reg.PROP_KERAS_VERSION] == keras.__version__
    assert regularized_meta[reg.PROP_TF_VERSION] == tf.__version__

    # Trainer: the regularizer's output (with its metadata, as KFP passes it on) + examples
    # with the label vocabulary ImageExampleGen records.
    examples = root / "examples"
    write_split(examples / "Split-train", per_class=8)
    write_split(examples / "Split-eval", per_class=4)
    model, model_run = root / "model", root / "model_run"
    output_file = root / "pods" / "trainer" / "executor_output.json"
    invocation = pod.executor_input(
        job,
        "Trainer",
        inputs={
            "examples": (examples, {"split_names": SPLIT_NAMES, "label_map": LABEL_MAP}),
            "base_model": (regularized, regularized_meta),
        },
        outputs={"model": model, "model_run": model_run},
        output_file=output_file,
    )
    output = trained = pod.run(job, "Trainer", invocation, cwd=root / "pods" / "cwd")
    parse_executor_output(output_file)
    assert (model / "Format-Serving" / "saved_model.pb").is_file()
    assert (model / "Format-Serving" / "model.keras").is_file()
    summary = json.loads((model_run / SUMMARY_FILE).read_text())
    assert summary["epochs_run"] == 1
    assert summary["penalty_terms_in_loss"] > 0
    assert summary["batchnorm_statistics_unchanged"] == 104
    assert set(output["artifacts"]) == {"model", "model_run"}
    assert pod.output_metadata(output, "model")["label_map"] == LABEL_MAP
    assert json.loads((model / "Format-Serving" / "label_map.json").read_text()) == {
        "ant": 0,
        "bee": 1,
    }

    # latest_pushed_model: nothing pushed yet, so the candidate is its own baseline.
    baseline = root / "baseline"
    output_file = root / "pods" / "baseline" / "executor_output.json"
    invocation = pod.executor_input(
        job,
        "latest_pushed_model",
        inputs={"model": (model, pod.output_metadata(output, "model"))},
        outputs={"baseline": baseline},
        output_file=output_file,
    )
    output = pod.run(job, "latest_pushed_model", invocation, cwd=root / "pods" / "cwd")
    assert (baseline / "Format-Serving" / "saved_model.pb").is_file()
    baseline_meta = pod.output_metadata(output, "baseline")
    assert baseline_meta[FIRST_RUN] == 1
    assert baseline_meta[BASELINE_SOURCE] == "candidate (nothing pushed yet)"
    assert baseline_meta[COMPARES_PRODUCTION] == 0
    assert baseline_meta[BASELINE_LABEL_MAP] == LABEL_MAP

    # Evaluator: a baseline that is the production model (the metadata latest_pushed_model
    # records after a push; the model itself stands in for it) knew "ant" and "bee", and the
    # evaluation data holds only "ant": the per-class guard requires "bee" and refuses.
    ant_only = root / "examples-ant-only"
    write_split(ant_only / "Split-eval", per_class=4, num_classes=1)
    evaluation, blessing = root / "evaluation", root / "blessing"
    production = {**pod.output_metadata(trained, "model"), COMPARES_PRODUCTION: 1}
    production[BASELINE_LABEL_MAP] = LABEL_MAP
    invocation = pod.executor_input(
        job,
        "Evaluator",
        inputs={
            "examples": (ant_only, {"split_names": json.dumps(["eval"]), "label_map": LABEL_MAP}),
            "model": (model, pod.output_metadata(trained, "model")),
            "baseline_model": (model, production),
        },
        outputs={"evaluation": evaluation, "blessing": blessing},
        output_file=root / "pods" / "evaluator" / "executor_output.json",
    )
    output = pod.run(job, "Evaluator", invocation, cwd=root / "pods" / "cwd")
    validation = tfma.load_validation_result(str(evaluation))
    missing = [json_format.MessageToDict(s) for s in validation.missing_slices]
    assert missing == [{"featureValues": {"label": "1"}}]
    assert pod.output_metadata(output, "blessing")["blessed"] == 0


@pytest.mark.e2e
def test_image_example_gen_resolves_the_latest_span_in_its_pod(local):
    job, root = local
    for span in (1, 2):
        write_target_span(root / "images", span, per_class=3)
    examples = root / "ingested"
    output_file = root / "pods" / "example_gen" / "executor_output.json"
    invocation = pod.executor_input(
        job, "ImageExampleGen", inputs={}, outputs={"examples": examples}, output_file=output_file
    )
    output = pod.run(job, "ImageExampleGen", invocation, cwd=root / "pods" / "cwd")
    parse_executor_output(output_file)
    metadata = pod.output_metadata(output, "examples")
    assert metadata["span"] == 2  # the driver's span, recorded for KFP's ML Metadata
    assert metadata["input_fingerprint"].startswith("split:single_split,num_files:15,")
    assert metadata["num_classes"] == 5
    assert metadata["count_train"] + metadata["count_eval"] == 15
    assert json.loads(metadata["spans"]) == [2]  # span_window 1: the newest span
    assert json.loads(metadata["split_names"]) == ["train", "eval"]
    for split in ("train", "eval"):
        files = sorted((examples / f"Split-{split}").glob("*.gz"))
        assert len(files) == 2, split  # shards_per_split reached the executor in its pod
        record = next(iter(tf.data.TFRecordDataset([str(f) for f in files], "GZIP")))
        features = tf.train.Example.FromString(record.numpy()).features.feature
        assert features["image"].bytes_list.value[0].startswith(b"\x89PNG")
        assert features["label"].int64_list.value[0] in range(5)


@pytest.mark.e2e
def test_image_example_gen_reads_a_window_and_a_holdout_in_its_pod(tmp_path):
    """``span_window`` and ``holdout`` reach the executor as the compiled ``custom_config``
    parameter (KFP's parameterValues), with the driver resolving the newest span in the pod."""
    config = cluster_config(
        pipeline_name="in-pod-window",
        root=str(tmp_path / "run"),
        data_root=str(tmp_path / "images"),
        backbone=BackboneConfig(weights="none"),
        push_destination=str(tmp_path / "serving"),
        train_eval_ratio=(1, 1),
        span_window=2,
        holdout=str(tmp_path / "holdout"),
        beam_args=("--direct_running_mode=in_memory", "--direct_num_workers=1"),
    )
    path = tmp_path / "pipeline.json"
    compile_pipeline(config, path, IMAGE, str(tmp_path / "root"), allow_local_paths=True)
    job = json.loads(path.read_text())
    for span in (1, 2, 3):
        write_target_span(tmp_path / "images", span, per_class=4)
    write_target_span(tmp_path / "holdout-source", 9, per_class=2)
    (tmp_path / "holdout-source" / "span-9").rename(tmp_path / "holdout")
    examples = tmp_path / "ingested"
    invocation = pod.executor_input(
        job,
        "ImageExampleGen",
        inputs={},
        outputs={"examples": examples},
        output_file=tmp_path / "pods" / "executor_output.json",
    )
    output = pod.run(job, "ImageExampleGen", invocation, cwd=tmp_path / "pods" / "cwd")
    metadata = pod.output_metadata(output, "examples")
    assert metadata["span"] == 3
    assert json.loads(metadata["spans"]) == [2, 3]
    assert json.loads(metadata["split_names"]) == ["train", "eval", "holdout"]
    assert metadata["count_holdout"] == 10
    span_counts = json.loads(metadata["span_counts"])
    assert set(span_counts) == {"2", "3"} and set(span_counts["2"]) == {"train"}
    assert sorted(p.name for p in examples.iterdir()) == [
        "Split-eval",
        "Split-holdout",
        "Split-train",
        "provenance.json",
    ]

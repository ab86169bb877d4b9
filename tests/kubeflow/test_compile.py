"""compile_pipeline: the PipelineJob JSON a KFP cluster receives, inspected field by field."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.components.base import base_beam_executor
from tfx.utils import import_utils

from backbone_regularizer.pipeline.config import BackboneConfig, PipelineConfig
from backbone_regularizer.pipeline.kubeflow.compile import compile_pipeline, describe
from backbone_regularizer.pipeline.kubeflow.entrypoint import EXAMPLE_GEN_DRIVER_FLAG
from backbone_regularizer.pipeline.kubeflow.entrypoint import _parser as entrypoint_parser
from backbone_regularizer.pipeline.kubeflow.schedule import load_pipeline_file
from tests.kubeflow import pod
from tests.kubeflow.configs import DATAFLOW_ARGS, IMAGE, ROOT, cluster_config
from tests.pipeline.test_pipeline_e2e import NODES

EXECUTORS = {
    "ImageExampleGen": "backbone_regularizer.components.image_ingestion.executor.Executor",
    "BackboneLoader": "backbone_regularizer.components.backbone_loader.executor.Executor",
    "BackboneRegularizer": "backbone_regularizer.components.regularizer.executor.Executor",
    "latest_pushed_model": (
        "backbone_regularizer.components.latest_pushed.component.LatestPushedModel_Executor"
    ),
    "Trainer": "tfx.components.trainer.executor.GenericExecutor",
    "Evaluator": "tfx.components.evaluator.executor.Executor",
    "Pusher": "tfx.components.pusher.executor.Executor",
}
# Our entrypoint stands in front of TFX's (pipeline/kubeflow/entrypoint.py) on every step.
ENTRYPOINT = ["python", "-m", "backbone_regularizer.pipeline.kubeflow.entrypoint"]
HEAVY = {"StatisticsGen", "BackboneLoader", "BackboneRegularizer", "Evaluator"}


def tasks(job: dict) -> dict:
    return job["pipelineSpec"]["root"]["dag"]["tasks"]


def arg_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_every_node_is_a_task_running_our_image(compiled):
    job, _ = compiled
    assert set(tasks(job)) == NODES
    for task in NODES:
        spec = pod.container(job, task)
        assert spec["image"] == IMAGE, task
        driver = [EXAMPLE_GEN_DRIVER_FLAG] if task == "ImageExampleGen" else []
        expected = ENTRYPOINT + driver
        assert spec["command"] == expected, task
        assert arg_after(spec["args"], "--json_serialized_invocation_args") == "{{$}}"
        # Schema 2.1: the entrypoint reads the parameterValues open-source KFP fills in.
        assert "--json_serialized_inputs_spec_args" in spec["args"], task
    assert job["pipelineSpec"]["schemaVersion"] == "2.1.0"


def test_executors_are_ours_and_importable(compiled):
    job, _ = compiled
    for task, class_path in EXECUTORS.items():
        args = pod.container(job, task)["args"]
        assert arg_after(args, "--executor_class_path") == class_path
        assert import_utils.import_class_by_path(class_path).__name__ == class_path.split(".")[-1]


def test_gpu_on_the_trainer_only_and_cpu_memory_on_heavy_steps(compiled):
    job, _ = compiled
    assert pod.container(job, "Trainer")["resources"] == {
        "cpuLimit": 8.0,
        "memoryLimit": 32.0,
        "accelerator": {"type": "nvidia.com/gpu", "count": "1"},
    }
    for task in NODES - {"Trainer"}:
        resources = pod.container(job, task).get("resources")
        if task in HEAVY:
            assert resources == {"cpuLimit": 4.0, "memoryLimit": 16.0}, task
        else:
            # Light steps use the namespace defaults; TFX drops platform configs of
            # FileBasedExampleGen (ImageExampleGen), tfx#6146.
            assert resources is None, task


def test_image_root_and_name_as_given(compiled):
    job, path = compiled
    assert job["runtimeConfig"]["gcsOutputDirectory"] == ROOT
    assert job["pipelineSpec"]["defaultPipelineRoot"] == ROOT
    assert job["pipelineSpec"]["pipelineInfo"]["name"] == "backbone-regularizer-kfp"
    assert job["displayName"] == "backbone-regularizer-kfp"
    assert json.loads(path.read_text()) == job
    json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob())  # a valid PipelineJob


def test_no_resolver_anywhere_and_the_baseline_is_latest_pushed_model(compiled):
    job, _ = compiled
    for label, executor in job["pipelineSpec"]["deploymentSpec"]["executors"].items():
        assert set(executor) == {"container"}, label  # no resolver, no importer
    assert not [name for name in tasks(job) if "resolver" in name.lower()]
    baseline = tasks(job)["Evaluator"]["inputs"]["artifacts"]["baseline_model"]
    assert baseline["taskOutputArtifact"] == {
        "producerTask": "latest_pushed_model",
        "outputArtifactKey": "baseline",
    }
    push_destination = tasks(job)["latest_pushed_model"]["inputs"]["parameters"]
    assert push_destination["push_destination"]["runtimeValue"]["constant"] == (
        "gs://my-bucket/backbone-regularizer/serving"
    )


def test_beam_args_reach_every_beam_step(compiled):
    job, _ = compiled
    beam_steps = {
        task
        for task in NODES
        if issubclass(
            import_utils.import_class_by_path(
                arg_after(pod.container(job, task)["args"], "--executor_class_path")
            ),
            base_beam_executor.BaseBeamExecutor,
        )
    }
    # SchemaGen and ExampleValidator run no Beam in TFX 1.16 (tests/pipeline/test_beam_steps.py).
    assert beam_steps == {"ImageExampleGen", "StatisticsGen", "Evaluator"}
    for task in beam_steps:
        spec = pod.container(job, task)
        # What our entrypoint (then TFX's) parses out of the command line as Beam options.
        _, beam_args = entrypoint_parser().parse_known_args(spec["command"][3:] + spec["args"])
        assert beam_args == list(DATAFLOW_ARGS), task


def test_example_gen_runs_its_driver_in_the_pod_and_is_never_cached(compiled):
    job, _ = compiled
    assert "lifecycle" not in pod.container(job, "ImageExampleGen")
    assert tasks(job)["ImageExampleGen"]["cachingOptions"] == {"enableCache": False}
    for task in NODES - {"ImageExampleGen"}:
        assert tasks(job)[task]["cachingOptions"] == {"enableCache": True}, task
    parameters = tasks(job)["ImageExampleGen"]["inputs"]["parameters"]
    assert "span-{SPAN}/*/*" in parameters["input_config"]["runtimeValue"]["constant"]


def test_parameters_are_typed_constants(compiled):
    job, _ = compiled
    regularizer = tasks(job)["BackboneRegularizer"]["inputs"]["parameters"]
    assert regularizer["safe_mode"]["runtimeValue"]["constant"] == 1
    spec = json.loads(regularizer["regularization_spec"]["runtimeValue"]["constant"])
    # The demo's default penalty (PipelineConfig.regularization): L2-SP toward the pre-trained
    # weights, BatchNorm frozen.
    assert spec["l2_sp"] == 0.01 and spec["l2"] == 0.0 and spec["freeze_batchnorm"] is True
    definitions = pod.component(job, "BackboneRegularizer")["inputDefinitions"]["parameters"]
    assert definitions["safe_mode"] == {"parameterType": "NUMBER_INTEGER"}
    trainer = tasks(job)["Trainer"]["inputs"]["parameters"]
    assert json.loads(trainer["custom_config"]["runtimeValue"]["constant"])["epochs"] == 1
    assert (
        trainer["run_fn"]["runtimeValue"]["constant"]
        == "backbone_regularizer.pipeline.trainer.run_fn"
    )


def test_describe_is_one_line(compiled):
    job, _ = compiled
    assert describe(job) == (
        f"backbone-regularizer-kfp: 10 steps, image {IMAGE}, root {ROOT}; "
        "Trainer: 1 x nvidia.com/gpu, 8.0 CPU, 32.0 GB"
    )


def test_yaml_output_is_the_bare_pipeline_spec(tmp_path, compiled):
    job, json_path = compiled
    path = tmp_path / "pipeline.yaml"
    returned = compile_pipeline(cluster_config(), path, image=IMAGE, pipeline_root=ROOT)
    assert returned["pipelineSpec"] == job["pipelineSpec"]
    text = path.read_text()
    assert text.startswith("# PIPELINE DEFINITION\n# Name: backbone-regularizer-kfp\n")
    spec = yaml.safe_load(text)
    assert spec == job["pipelineSpec"]
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # what kfp.Client parses
    assert load_pipeline_file(path) == (spec, ROOT)
    assert load_pipeline_file(json_path) == (job["pipelineSpec"], ROOT)


def test_cpu_only_trainer_and_custom_limits(tmp_path):
    job = compile_pipeline(
        cluster_config(),
        tmp_path / "p.json",
        image=IMAGE,
        pipeline_root=ROOT,
        gpus=0,
        trainer_cpu=2,
        trainer_memory_gb=6.5,
        cpu=1,
        memory_gb=3,
    )
    assert pod.container(job, "Trainer")["resources"] == {"cpuLimit": 2.0, "memoryLimit": 6.5}
    assert pod.container(job, "Evaluator")["resources"] == {"cpuLimit": 1.0, "memoryLimit": 3.0}


def test_vertex_accelerator_names_and_tfx_example_gen_hook(tmp_path):
    job = compile_pipeline(
        cluster_config(),
        tmp_path / "p.json",
        image=IMAGE,
        pipeline_root=ROOT,
        gpu_type="NVIDIA_TESLA_T4",
        gpus=2,
        platform="vertex",
    )
    accelerator = pod.container(job, "Trainer")["resources"]["accelerator"]
    assert accelerator == {"type": "NVIDIA_TESLA_T4", "count": "2"}
    example_gen = pod.container(job, "ImageExampleGen")
    assert example_gen["command"] == ENTRYPOINT
    assert "preCacheCheck" in example_gen["lifecycle"]  # Vertex AI runs TFX's driver hook
    assert tasks(job)["ImageExampleGen"]["cachingOptions"] == {"enableCache": True}


def test_backbone_importer_variant_has_no_resources_and_no_loader(tmp_path):
    config = cluster_config(
        backbone=BackboneConfig(keras_file="gs://my-bucket/backbone-regularizer/backbone")
    )
    job = compile_pipeline(config, tmp_path / "p.json", image=IMAGE, pipeline_root=ROOT)
    assert set(tasks(job)) == NODES - {"BackboneLoader"} | {"backbone_importer"}
    label = pod.component(job, "backbone_importer")["executorLabel"]
    importer = job["pipelineSpec"]["deploymentSpec"]["executors"][label]
    assert importer["importer"]["artifactUri"]["constant"] == (
        "gs://my-bucket/backbone-regularizer/backbone"
    )


def test_no_cache_anywhere_when_the_config_disables_it(tmp_path):
    config = cluster_config(enable_cache=False)
    job = compile_pipeline(config, tmp_path / "p.json", image=IMAGE, pipeline_root=ROOT)
    assert all(not t.get("cachingOptions", {}).get("enableCache") for t in tasks(job).values())


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"gpus": -1}, "Expected an int >= 0. Received: gpus=-1"),
        ({"gpus": True}, "Expected an int >= 0. Received: gpus=True"),
        ({"gpu_type": "NVIDIA_TESLA_T4"}, "Vertex AI accelerator names need platform='vertex'"),
        ({"gpu_type": "gpu"}, "Received: gpu_type='gpu'"),
        (
            {"gpu_type": "nvidia.com/gpu", "platform": "vertex"},
            "Expected a Vertex AI accelerator name such as 'NVIDIA_TESLA_T4'",
        ),
        ({"platform": "argo"}, "Expected one of ['kubeflow', 'vertex']. Received: platform="),
        ({"image": ""}, "Invalid value for argument `image`"),
        ({"image": "repo/img: 1"}, "Received: image='repo/img: 1'"),
        ({"pipeline_root": "/tmp/root"}, "Received: pipeline_root='/tmp/root'"),
        (
            {"pipeline_root": "s3://b/root", "platform": "vertex", "gpu_type": "NVIDIA_TESLA_T4"},
            "Expected gs:// URIs on Vertex AI (its pods cannot read Kubernetes secrets)",
        ),
        ({"pipeline_root": "minio://mlpipeline/v2"}, "Expected a URI every pod can reach"),
        ({"output_path": "pipeline.txt"}, "Received: output_path="),
        ({"trainer_memory_gb": 0}, "Expected a finite number > 0. Received: trainer_memory_gb=0"),
        ({"cpu": math.nan}, "Received: cpu=nan"),
    ],
)
def test_argument_errors_name_the_argument_and_write_nothing(tmp_path, changes, message):
    arguments = dict(
        config=cluster_config(),
        output_path=tmp_path / "p.json",
        image=IMAGE,
        pipeline_root=ROOT,
    )
    arguments.update(changes)
    with pytest.raises(ValueError) as raised:
        compile_pipeline(**arguments)
    assert message in str(raised.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "changes, name",
    [
        ({"data_root": "runs/demo/data/images"}, "config.data_root"),
        ({"push_destination": "/srv/serving"}, "config.push_destination"),
        ({"backbone": BackboneConfig(weights="w.weights.h5")}, "config.backbone.weights"),
        ({"backbone": BackboneConfig(keras_file="/models/b")}, "config.backbone.keras_file"),
    ],
)
def test_local_paths_in_the_config_are_refused(tmp_path, changes, name):
    with pytest.raises(ValueError, match=f"Invalid value for `{name}` on Kubeflow"):
        compile_pipeline(cluster_config(**changes), tmp_path / "p.json", IMAGE, ROOT)


def test_imagenet_and_random_weights_need_no_uri(tmp_path):
    for weights in ("imagenet", "none"):
        config = cluster_config(backbone=BackboneConfig(weights=weights))
        job = compile_pipeline(config, tmp_path / f"{weights}.json", IMAGE, ROOT)
        weights_parameter = tasks(job)["BackboneLoader"]["inputs"]["parameters"]["weights"]
        assert weights_parameter["runtimeValue"]["constant"] == weights


def test_default_root_comes_from_the_config(tmp_path):
    job = compile_pipeline(cluster_config(), tmp_path / "p.json", IMAGE, pipeline_root=None)
    assert (
        job["runtimeConfig"]["gcsOutputDirectory"] == "gs://my-bucket/backbone-regularizer/pipeline"
    )


def test_config_must_be_a_pipeline_config(tmp_path):
    with pytest.raises(TypeError, match="Expected `config` to be a PipelineConfig. Received: dict"):
        compile_pipeline({"pipeline_name": "x"}, tmp_path / "p.json", IMAGE, ROOT)


def test_kfp_pipeline_names_are_validated_by_the_config():
    with pytest.raises(ValueError, match=r"\[a-z0-9\]\[a-z0-9-\]\{0,127\}. Received: "):
        PipelineConfig(pipeline_name="Backbone_Regularizer")

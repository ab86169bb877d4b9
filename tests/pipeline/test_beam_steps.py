"""`beam_args` and `shards_per_split` from the config to the steps that run Beam, locally.

The local runner launches each node from the compiled pipeline IR: a Beam node gets a
``BeamExecutableSpec`` whose ``beam_pipeline_args_placeholders`` TFX's ``BeamExecutorOperator``
resolves into the executor's ``Context(beam_pipeline_args=...)``. That is what is checked
here, for every node. tests/kubeflow/test_compile.py checks the compiled Kubeflow spec.
"""

from __future__ import annotations

import json

import pytest
from tfx.dsl.compiler import compiler, placeholder_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.orchestration.local import runner_utils
from tfx.orchestration.portable import beam_executor_operator, data_types
from tfx.proto.orchestration import executable_spec_pb2
from tfx.utils import import_utils

from backbone_regularizer.components.image_ingestion.custom_config import read_custom_config
from backbone_regularizer.pipeline.config import BackboneConfig, PipelineConfig
from backbone_regularizer.pipeline.create_pipeline import create_pipeline
from tests.pipeline.test_pipeline_e2e import NODES

# TFX 1.16: SchemaGen and ExampleValidator read statistics without Beam (BaseExecutor).
BEAM_STEPS = {"ImageExampleGen", "StatisticsGen", "Evaluator"}
MULTI_PROCESSING = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")


def config(tmp_path, **changes) -> PipelineConfig:
    return PipelineConfig(
        root=str(tmp_path / "run"),
        data_root=str(tmp_path / "images"),
        backbone=BackboneConfig(weights="none"),
        **changes,
    )


def local_executor_specs(pipeline) -> dict:
    ir = compiler.Compiler().compile(pipeline)
    deployment = runner_utils.extract_local_deployment_config(ir)
    return {
        node.pipeline_node.node_info.id: runner_utils.extract_executor_spec(
            deployment, node.pipeline_node.node_info.id
        )
        for node in ir.nodes
    }


def test_beam_args_reach_every_beam_step_of_the_local_run(tmp_path):
    specs = local_executor_specs(create_pipeline(config(tmp_path, beam_args=MULTI_PROCESSING)))

    assert set(specs) == NODES
    beam = {
        node
        for node, spec in specs.items()
        if isinstance(spec, executable_spec_pb2.BeamExecutableSpec)
    }
    assert beam == BEAM_STEPS
    for node in BEAM_STEPS:
        operator = beam_executor_operator.BeamExecutorOperator(specs[node])
        # What run_executor resolves and hands to the executor's Context.
        resolved = [
            placeholder_utils.resolve_placeholder_expression(
                arg,
                placeholder_utils.ResolutionContext(exec_info=data_types.ExecutionInfo()),
            )
            for arg in operator.beam_pipeline_args
        ]
        assert resolved == list(MULTI_PROCESSING), node
    for node in NODES - BEAM_STEPS:
        class_path = specs[node].class_path
        executor = import_utils.import_class_by_path(class_path)
        assert not issubclass(executor, base_beam_executor.BaseBeamExecutor), class_path


def test_shards_per_split_reaches_image_example_gen(tmp_path):
    pipeline = create_pipeline(config(tmp_path, shards_per_split=16))
    [example_gen] = [c for c in pipeline.components if c.id == "ImageExampleGen"]
    assert read_custom_config(example_gen.exec_properties["custom_config"]) == {
        "shards_per_split": 16
    }
    default = create_pipeline(config(tmp_path))
    [example_gen] = [c for c in default.components if c.id == "ImageExampleGen"]
    assert example_gen.exec_properties["custom_config"] is None


@pytest.mark.parametrize("value", [0, 1025, "8", True, 2.5])
def test_invalid_shards_per_split_in_a_config_file_names_the_key(tmp_path, value):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"shards_per_split": value}))
    with pytest.raises(ValueError, match="^Invalid config `shards_per_split`") as error:
        PipelineConfig.from_file(path)
    assert "Expected null or an int in [1, 1024]" in str(error.value)
    assert f"Received: shards_per_split={value!r}" in str(error.value)

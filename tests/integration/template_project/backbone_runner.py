"""Run the project's backbone pipeline locally, or compile it for Kubeflow Pipelines.

python backbone_runner.py local <data_path> <output_dir>
python backbone_runner.py kubeflow <data_uri> <pipeline_root_uri> <image> <pipeline.json>
"""

from __future__ import annotations

import os
import sys

from tfx.orchestration import metadata
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from backbone_regularizer.pipeline.kubeflow import apply_kubeflow_fixes, write_pipeline_file
from pipeline import backbone_pipeline, configs

RUN_FN = "models.backbone_model.run_fn"
NUM_CLASSES = 2


def run_local(data_path: str, output_dir: str) -> None:
    LocalDagRunner().run(
        backbone_pipeline.create_pipeline(
            pipeline_name=configs.PIPELINE_NAME,
            pipeline_root=os.path.join(output_dir, "tfx_pipeline_output"),
            data_path=data_path,
            run_fn=RUN_FN,
            num_classes=NUM_CLASSES,
            metadata_connection_config=metadata.sqlite_metadata_connection_config(
                os.path.join(output_dir, "tfx_metadata", "metadata.db")
            ),
        )
    )


def compile_kubeflow(data_uri: str, pipeline_root: str, image: str, output_path: str) -> None:
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True
        )
    )
    job = runner.run(
        backbone_pipeline.create_pipeline(
            pipeline_name=configs.PIPELINE_NAME,
            pipeline_root=pipeline_root,
            data_path=data_uri,
            run_fn=RUN_FN,
            num_classes=NUM_CLASSES,
        ),
        write_out=False,
    )
    apply_kubeflow_fixes(job, pipeline_root=pipeline_root)
    write_pipeline_file(job, output_path)


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"local": run_local, "kubeflow": compile_kubeflow}[command](*arguments)

"""One worker of a cluster on 127.0.0.1 (``tests/trainer/test_distribution_multi_worker.py``).

    TF_CONFIG=... python -m tests.trainer.multi_worker MODE ARGS_JSON

``ARGS_JSON``: ``{"examples", "base_model", "model", "model_run"}`` (artifact uris) and
``"custom_config"`` (the Trainer's, with ``distribution: "multi_worker"``).

MODE ``trainer``: what every worker runs when a platform starts the Trainer's executor once
per worker with its own ``TF_CONFIG`` (Vertex AI through TFX's
``google_cloud_ai_platform.Trainer``, a Kubeflow TFJob): TFX's ``GenericExecutor.Do`` with the
same artifacts and execution properties, ``run_fn=RUN_FN``.

MODE ``export``: ``run_fn``'s output path without Keras' ``fit``: the classifier built on the
regularized base under ``MultiWorkerMirroredStrategy``, exported through ``worker_outputs``
(the chief into the Trainer's folders, the other worker into a temporary one), then the
``barrier``.
"""

from __future__ import annotations

import json
import sys

from tfx.components.trainer.executor import GenericExecutor
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import json_utils, proto_utils

from backbone_regularizer.pipeline.trainer import RUN_FN
from backbone_regularizer.pipeline.trainer import module as trainer_module
from backbone_regularizer.pipeline.trainer.base_model import load_base_model
from backbone_regularizer.pipeline.trainer.config import TrainerConfig
from backbone_regularizer.pipeline.trainer.distribution import (
    barrier,
    resolve_devices,
    worker_outputs,
)
from backbone_regularizer.pipeline.trainer.export import export_serving_model


def artifact(kind, uri: str):
    instance = kind()
    instance.uri = uri
    return instance


def run_trainer_executor(args: dict) -> None:
    examples = artifact(standard_artifacts.Examples, args["examples"])
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    GenericExecutor().Do(
        {
            "examples": [examples],
            "base_model": [artifact(standard_artifacts.Model, args["base_model"])],
        },
        {
            "model": [artifact(standard_artifacts.Model, args["model"])],
            "model_run": [artifact(standard_artifacts.ModelRun, args["model_run"])],
        },
        {
            "run_fn": RUN_FN,
            "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs()),
            "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs()),
            "custom_config": json_utils.dumps(args["custom_config"]),
        },
    )


def export_only(args: dict) -> None:
    config = TrainerConfig.from_dict(args["custom_config"])
    strategy, mixed = resolve_devices(config)
    fn_args = type("FnArgs", (), {"base_model": f"{args['base_model']}/Format-Serving"})
    with strategy.scope():
        base, _ = load_base_model(fn_args)
        classifier = trainer_module.build_classifier(base, config, mixed)
    with worker_outputs(strategy, f"{args['model']}/Format-Serving", args["model_run"]) as (
        serving_model_dir,
        _,
    ):
        export_serving_model(
            classifier, serving_model_dir, config.image_size, config.preprocessing_module
        )
    barrier(strategy)


if __name__ == "__main__":
    mode, arguments = sys.argv[1], json.loads(sys.argv[2])
    {"trainer": run_trainer_executor, "export": export_only}[mode](arguments)

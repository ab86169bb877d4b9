"""The Trainer's provenance: its inputs and outputs as ``run_fn`` sees them (``fn_args``).

``run_fn`` gets no artifacts, only paths: ``train_files``/``eval_files`` are
``<examples uri>/Split-<name>/*``, ``base_model`` is ``<model uri>/Format-Serving``,
``schema_path`` a file in the Schema artifact. The trained model's record lies in its
``Format-Serving`` folder, which the Pusher copies: every pushed copy carries the whole chain.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from backbone_regularizer.components.provenance import SERVING_FOLDER
from backbone_regularizer.components.provenance_step import step


def _parent(path: str) -> str:
    return os.path.dirname(path.rstrip("/"))


def trainer_artifacts(fn_args) -> tuple[dict, dict]:
    """``(inputs, outputs)``: channel key -> ``[{"uri", "type"}]`` from ``fn_args``."""
    patterns = [*(fn_args.train_files or []), *(fn_args.eval_files or [])]
    examples = sorted({_parent(_parent(pattern)) for pattern in patterns})
    inputs: dict[str, list[dict]] = {"examples": [{"uri": u, "type": "Examples"} for u in examples]}
    if fn_args.base_model:
        inputs["base_model"] = [{"uri": _parent(fn_args.base_model), "type": "Model"}]
    if fn_args.schema_path:
        inputs["schema"] = [{"uri": _parent(fn_args.schema_path), "type": "Schema"}]
    outputs = {
        "model": [{"uri": _parent(fn_args.serving_model_dir), "type": "Model"}],
        "model_run": [{"uri": fn_args.model_run_dir.rstrip("/"), "type": "ModelRun"}],
    }
    return inputs, outputs


@contextlib.contextmanager
def recorded_training(fn_args, write: bool = True) -> Iterator[None]:
    """``provenance_step.step`` around a ``run_fn`` body, with the Trainer's custom config.

    ``write=False`` (a multi-worker cluster's non-chief workers, whose outputs never reach the
    artifact) runs the body alone.
    """
    if not write:
        yield
        return
    inputs, outputs = trainer_artifacts(fn_args)
    with step(
        "Trainer",
        inputs,
        outputs,
        {"custom_config": dict(fn_args.custom_config or {})},
        executor="backbone_regularizer.pipeline.trainer.module.run_fn",
        folders={"model": SERVING_FOLDER},
    ):
        yield

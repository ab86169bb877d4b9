"""``Trainer``: TFX's Trainer component with the label-aware executor (see ``executor``).

The same inputs, outputs and parameters as ``tfx.components.Trainer``, and the same node id
("Trainer"); only its executor differs: the ``run_fn`` learns the Examples' label vocabulary
through its ``custom_config`` and the output Model records it.

>>> trainer = Trainer(run_fn=RUN_FN, examples=..., base_model=..., custom_config={...})
"""

from __future__ import annotations

from tfx.components import Trainer as TfxTrainer
from tfx.dsl.components.base import executor_spec

from backbone_regularizer.pipeline.trainer.executor import Executor


class Trainer(TfxTrainer):
    """TFX's Trainer, told the label vocabulary of its Examples."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

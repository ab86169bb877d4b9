"""KFP retry policies in a compiled pipeline: how often a failed step runs again, and when.

TFX's ``KubeflowV2DagRunner`` writes no retry policy, so without this a pod killed by an OOM,
an eviction or a node shutdown fails the whole run. ``set_retry_policy`` writes KFP's
``PipelineTaskSpec.retryPolicy`` (what ``kfp.dsl.PipelineTask.set_retry`` writes) into every
task of a compiled PipelineJob; the Trainer, the most expensive step to redo and the one most
often on preemptible GPU nodes, gets more retries than the others. A retried step runs again
with the same ExecutorInput, so it writes to the same output URIs as the attempt that failed:
our executors start over cleanly there and the Trainer resumes from its last epoch
(docs/retries.md).

Who honours it (read in source, not observed on a cluster): the open-source KFP backend from
2.5.0 (kubeflow/pipelines#11673; 2.0-2.4 dropped it, #9950) as an Argo ``retryStrategy`` with
Argo's default ``retryPolicy: OnFailure`` (a container that exits non-zero or is killed is
retried; a pod deleted outright is an Argo *error* and is not); Vertex AI Pipelines;
``kfp.local`` 2.17.3 (``kfp/local/orchestrator/task_executor.py``).

>>> policy = RetryPolicy(retries=2)  # every step twice, the Trainer 5 times
>>> set_retry_policy(job, policy)  # doctest: +SKIP
>>> job["pipelineSpec"]["root"]["dag"]["tasks"]["Trainer"]["retryPolicy"]  # doctest: +SKIP
{'maxRetryCount': 5, 'backoffDuration': '60s', 'backoffFactor': 2.0,
 'backoffMaxDuration': '604800s'}
"""

from __future__ import annotations

import dataclasses
from typing import Any

# The Trainer gets at least this many retries when retries are on (``trainer_retries=None``).
TRAINER_MIN_RETRIES = 5
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_SECONDS = 60
DEFAULT_BACKOFF_FACTOR = 2
# Open-source KFP passes this to Argo as ``backoff.maxDuration``: a deadline counted from the
# start of the FIRST attempt, after which no retry starts (Argo's operator.go), so it must
# exceed the longest training. KFP's own default (3600 s) would never retry a Trainer killed
# after an hour. Vertex AI and kfp.local read it as the longest wait between two attempts.
DEFAULT_MAX_DURATION_SECONDS = 7 * 24 * 3600
# The executors whose steps get ``trainer_retries``: TFX's Trainer, or ours (TFX's with the
# label vocabulary), whatever the node's id.
TRAINER_EXECUTORS = (
    "tfx.components.trainer.executor.GenericExecutor",
    "tfx.components.trainer.executor.Executor",
    "backbone_regularizer.pipeline.trainer.executor.Executor",
)
EXECUTOR_FLAG = "--executor_class_path"


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected an int >= {minimum}. "
            f"Received: {name}={value!r}"
        )


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """KFP's retry policy for every step of a pipeline, with its own count for the Trainer.

    The wait before retry ``k`` (1-based) is ``backoff_seconds * backoff_factor ** (k - 1)``.

    Args:
        retries: how many times a failed step runs again (0: never).
        trainer_retries: the same for the Trainer's step; None: ``max(retries, 5)``, or 0
            when ``retries`` is 0.
        backoff_seconds: wait before the first retry.
        backoff_factor: the wait is multiplied by this after each retry (an int: the
            open-source backend hands it to Argo, which reads an integer).
        max_duration_seconds: open-source KFP (Argo): no retry starts later than this after
            the first attempt started, so keep it above the longest training. Vertex AI and
            kfp.local: the longest wait between two attempts.

    Raises:
        ValueError: a value out of range; the message names it.
    """

    retries: int = DEFAULT_RETRIES
    trainer_retries: int | None = None
    backoff_seconds: int = DEFAULT_BACKOFF_SECONDS
    backoff_factor: int = DEFAULT_BACKOFF_FACTOR
    max_duration_seconds: int = DEFAULT_MAX_DURATION_SECONDS

    def __post_init__(self):
        _check_int("retries", self.retries, 0)
        if self.trainer_retries is not None:
            _check_int("trainer_retries", self.trainer_retries, 0)
        _check_int("backoff_seconds", self.backoff_seconds, 0)
        _check_int("backoff_factor", self.backoff_factor, 1)
        _check_int("max_duration_seconds", self.max_duration_seconds, 1)

    @property
    def trainer(self) -> int:
        """The Trainer's retries, default resolved."""
        if self.trainer_retries is not None:
            return self.trainer_retries
        return max(self.retries, TRAINER_MIN_RETRIES) if self.retries else 0

    def task_policy(self, retries: int) -> dict | None:
        """The ``retryPolicy`` JSON of a task with ``retries`` retries (None for 0), in the
        form KFP's compiler writes (``kfp-pipeline-spec``'s proto, converted to JSON)."""
        if not retries:
            return None
        from google.protobuf import json_format
        from kfp.pipeline_spec import pipeline_spec_pb2

        proto = pipeline_spec_pb2.PipelineTaskSpec.RetryPolicy(
            max_retry_count=retries, backoff_factor=float(self.backoff_factor)
        )
        proto.backoff_duration.seconds = self.backoff_seconds
        proto.backoff_max_duration.seconds = self.max_duration_seconds
        policy = json_format.MessageToDict(proto)
        # proto3 JSON leaves out a zero duration; KFP's compiler writes "0s" (an immediate retry).
        policy.setdefault("backoffDuration", "0s")
        return policy


# compile_pipeline's default: every step 2 retries, the Trainer 5.
DEFAULT_POLICY = RetryPolicy()


def as_policy(retries: RetryPolicy | int | None) -> RetryPolicy | None:
    """``RetryPolicy`` as given, an int as ``RetryPolicy(retries=n)``, None as None.

    Raises:
        TypeError: anything else.
    """
    if retries is None or isinstance(retries, RetryPolicy):
        return retries
    if isinstance(retries, int) and not isinstance(retries, bool):
        return RetryPolicy(retries=retries)
    raise TypeError(
        "Expected `retries` to be a RetryPolicy, an int or None. "
        f"Received: retries={retries!r} ({type(retries).__name__})"
    )


def is_trainer(container: dict | None) -> bool:
    """Whether a compiled step runs TFX's Trainer (by its ``--executor_class_path``)."""
    args = (container or {}).get("args", [])
    if EXECUTOR_FLAG not in args[:-1]:
        return False
    return args[args.index(EXECUTOR_FLAG) + 1] in TRAINER_EXECUTORS


def set_retry_policy(job: dict, policy: RetryPolicy) -> dict:
    """Write ``policy`` into every task of a compiled PipelineJob; in place.

    Steps that run TFX's Trainer get ``policy.trainer`` retries, the others ``policy.retries``
    (Importers too: kfp.local retries them; the backend retries container steps only). A
    count of 0 removes the task's ``retryPolicy``.

    Returns:
        ``job``, changed.
    """
    spec = job["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"]
    for task in spec["root"]["dag"]["tasks"].values():
        label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        container = executors[label].get("container")
        retry = policy.task_policy(policy.trainer if is_trainer(container) else policy.retries)
        if retry is None:
            task.pop("retryPolicy", None)
        else:
            task["retryPolicy"] = retry
    return job


def describe_retries(job: dict) -> str:
    """``"retries 2 (Trainer 5), backoff 60 s x2"`` or ``"no retries"``, from the job."""
    spec = job["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"]
    counts, trainer, policy = set(), set(), None
    for task in spec["root"]["dag"]["tasks"].values():
        label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        retry = task.get("retryPolicy") or {}
        count = int(retry.get("maxRetryCount", 0))
        (trainer if is_trainer(executors[label].get("container")) else counts).add(count)
        policy = policy or (retry if count else None)
    if policy is None:
        return "no retries"
    others = "/".join(str(c) for c in sorted(counts)) or "0"
    text = f"retries {others}"
    if trainer and trainer != counts:
        text += f" (Trainer {'/'.join(str(c) for c in sorted(trainer))})"
    factor = float(policy.get("backoffFactor", DEFAULT_BACKOFF_FACTOR))
    return f"{text}, backoff {policy.get('backoffDuration', '0s')} x{factor:g}"

"""Resume an interrupted training: the state of its last completed epoch, written atomically.

A Kubeflow retry runs the Trainer again with the same output URIs (kubeflow/pipelines#13175),
so a checkpoint under ``model_run_dir`` is found by the next attempt::

    <model_run_dir>/checkpoint/
        attempts.json              one entry per attempt of the step (start, pod, resumed from)
        state.json                 the last completed epoch: phase, epochs, history, the best
                                   epoch so far, the start's metrics and the baselines, and
                                   which folders hold the weights. Written last, atomically
        epoch-0003/variables.npz   every variable of the classifier (weights, BatchNorm
                                   statistics, dropout seed state), in ``model.variables`` order
        epoch-0003/optimizer.npz   the optimizer's variables (step, Adam moments, loss scale)
        epoch-0001/variables.npz   the best epoch's (``start``: epoch-0000), kept while it is best

An epoch's folder is complete before ``state.json`` names it (``state.json`` is written to a
temporary name and renamed: atomic on a local disk, one object write on ``gs://``/``s3://``),
then the folders it no longer names are removed. A process killed at any moment leaves the
previous epoch's state readable.

What is restored, and what is not:

* weights and optimizer state: from the checkpoint, after the classifier is built the same
  way from the base model artifact. The penalties live on the base model's variables and the
  L2-SP anchors are constants of their regularizers, loaded from the artifact (the pre-trained
  weights), never from the checkpoint;
* the data order: epoch ``k`` of a resumed run sees the same batches as epoch ``k`` of an
  uninterrupted one (``skip_epochs``);
* refused: a checkpoint of another training (its fingerprint: the Trainer config, the base
  model's weights, the examples) or one whose variables differ from the classifier's.

>>> checkpoint = TrainingCheckpoint(fn_args.model_run_dir, fingerprint(...))
>>> resume = checkpoint.begin_attempt()  # None: nothing to resume
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
from absl import logging
from tfx.dsl.io import fileio

FORMAT = 1
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
ATTEMPTS_FILE = "attempts.json"
VARIABLES_FILE = "variables.npz"
OPTIMIZER_FILE = "optimizer.npz"
START = "start"
# Where the orchestrator names the attempt's pod (KFP sets it in every step's environment).
POD_ENV = ("KFP_POD_NAME", "HOSTNAME")


def epoch_folder(epoch: int) -> str:
    """``epoch-0003``: the folder of the state after ``epoch`` epochs (0: the start)."""
    return f"epoch-{epoch:04d}"


def fingerprint(parts: Mapping[str, Any]) -> str:
    """SHA-256 of ``parts`` as sorted JSON: what makes two trainings the same training."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class CheckpointMismatch(RuntimeError):
    """The checkpoint found in ``model_run_dir`` belongs to another training."""


@dataclasses.dataclass
class PhasePlan:
    """How one training phase (one ``fit``) runs in this attempt.

    Attributes:
        initial_epoch: its epochs an interrupted attempt completed (``fit(initial_epoch=)``).
        done: nothing is left to run in it.
        resumed: it continues a phase an interrupted attempt was in.
        restore_optimizer: called with the compiled model: the optimizer state to go on with.
    """

    initial_epoch: int = 0
    done: bool = False
    resumed: bool = False
    restore_optimizer: Callable[[keras.Model], None] | None = None


@dataclasses.dataclass
class ResumePoint:
    """The state an interrupted attempt left: where the next one starts.

    Attributes:
        epochs: epochs completed over all phases (0: only the start was saved).
        phase: the phase of the last completed epoch (``"start"`` before any).
        phase_epochs: epochs completed in that phase.
        stopped: that phase was ended by early stopping at its last epoch.
        folder: the folder of the last completed epoch.
        best_folder: the folder holding the best epoch's weights.
        extra: everything else the training saved (history, selection, start, baselines).
        attempt: this attempt's number (the first is 1).
        checkpoint: the checkpoint it was read from (``restore`` and ``plan`` read it again).
    """

    epochs: int
    phase: str
    phase_epochs: int
    stopped: bool
    folder: str
    best_folder: str
    extra: dict
    attempt: int
    checkpoint: TrainingCheckpoint

    def plan(self, phase: str, epochs: int, order: Sequence[str]) -> PhasePlan:
        """Where ``phase`` (of ``epochs`` epochs; ``order``: the phases in the order they
        run) starts in this attempt."""
        if self.phase == START:
            return PhasePlan()
        here, left = order.index(phase), order.index(self.phase)
        if here < left:
            return PhasePlan(done=True)
        if here > left:
            return PhasePlan()
        if self.stopped or self.phase_epochs >= epochs:
            return PhasePlan(initial_epoch=self.phase_epochs, done=True, resumed=True)

        def restore_optimizer(model: keras.Model) -> None:
            model.optimizer.build(model.trainable_variables)
            self.checkpoint.restore_optimizer(model.optimizer, self.folder)

        return PhasePlan(self.phase_epochs, False, True, restore_optimizer)

    def restore(self, model: keras.Model, selection) -> None:
        """The classifier's variables of the last completed epoch, and the best-epoch
        ``selection`` (``selection.BestEpoch``) with its best weights."""
        self.checkpoint.restore_variables(model.variables, self.folder)
        best = self.checkpoint.read_variables(model.variables, self.best_folder, model.weights)
        selection.load_state(self.extra["selection"], best)


def _write_json(path: str, data: Any) -> None:
    """Write ``data`` to ``path`` atomically: a temporary name, then a rename."""
    temporary = f"{path}.tmp"
    with fileio.open(temporary, "w") as handle:
        handle.write(json.dumps(data, indent=1, sort_keys=True))
    fileio.rename(temporary, path, overwrite=True)


def _read_json(path: str) -> Any:
    with fileio.open(path, "r") as handle:
        return json.loads(handle.read())


def _variable_manifest(variables: Sequence) -> list[list]:
    return [[v.path, list(v.shape), str(v.dtype)] for v in variables]


def _save_arrays(variables: Sequence, path: str, local_dir: str) -> None:
    local = os.path.join(local_dir, os.path.basename(path))
    arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}
    np.savez(local, **arrays)
    fileio.copy(local, path, overwrite=True)


def _load_arrays(path: str, local_dir: str) -> list[np.ndarray]:
    local = os.path.join(local_dir, os.path.basename(path))
    fileio.copy(path, local, overwrite=True)
    with np.load(local) as data:
        return [data[f"v{i:05d}"] for i in range(len(data.files))]


class TrainingCheckpoint:
    """The checkpoint of one training under ``<model_run_dir>/checkpoint``.

    Args:
        model_run_dir: the Trainer's ModelRun folder (local, ``gs://``, ``s3://``).
        fingerprint: ``fingerprint(...)`` of what defines this training; a checkpoint with
            another one is refused.
        writer: this process writes (and removes) the checkpoint; False for the workers of a
            multi-worker cluster other than the chief, which only read it.
    """

    def __init__(self, model_run_dir: str, fingerprint: str, writer: bool = True):
        self.root = os.path.join(model_run_dir, CHECKPOINT_DIR)
        self.fingerprint = fingerprint
        self.writer = writer
        self.attempt = 1
        self.attempts: list[dict] = []

    # -- reading ---------------------------------------------------------------------------

    def _state(self) -> dict | None:
        path = os.path.join(self.root, STATE_FILE)
        if not fileio.exists(path):
            return None
        state = _read_json(path)
        if state.get("format") != FORMAT or state.get("fingerprint") != self.fingerprint:
            raise CheckpointMismatch(
                f"Expected the checkpoint in {self.root} to be one of this training "
                f"(fingerprint {self.fingerprint[:12]}, format {FORMAT}). Received: fingerprint "
                f"{str(state.get('fingerprint'))[:12]}, format {state.get('format')}: another "
                "Trainer config, base model or data wrote it. Delete the folder to start over."
            )
        return state

    def begin_attempt(self, environ: Mapping[str, str] | None = None) -> ResumePoint | None:
        """Record this attempt in ``attempts.json``; return where to resume, or None.

        A state left by an earlier attempt means that attempt did not finish (a finished
        training removes its checkpoint): it is recorded as interrupted after its last
        completed epoch.

        Raises:
            CheckpointMismatch: the checkpoint belongs to another training.
        """
        environ = os.environ if environ is None else environ
        state = self._state()
        attempts_path = os.path.join(self.root, ATTEMPTS_FILE)
        self.attempts = _read_json(attempts_path) if fileio.exists(attempts_path) else []
        for earlier in self.attempts:
            if earlier.get("outcome") is None:
                earlier["outcome"] = "interrupted"
        if self.attempts:
            self.attempts[-1]["epochs_completed_before_interruption"] = (
                state["epochs"] if state else 0
            )
        self.attempt = len(self.attempts) + 1
        pod = next((environ[name] for name in POD_ENV if environ.get(name)), None)
        resumed = state["epochs"] if state else None
        self.attempts.append(
            {
                "attempt": self.attempt,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "pod": pod,
                "resumed_from_epoch": resumed,
                "outcome": None,
            }
        )
        if self.writer:
            fileio.makedirs(self.root)
            _write_json(attempts_path, self.attempts)
        if state is None:
            if self.attempt > 1:
                logging.info(
                    "checkpoint: attempt %d; the earlier attempt(s) saved no epoch, starting over",
                    self.attempt,
                )
            if self.writer:
                self._remove_folders(keep=())
            return None
        logging.info(
            "checkpoint: attempt %d resumes after epoch %d (%s, %d epochs of that phase) from %s",
            self.attempt,
            state["epochs"],
            state["phase"],
            state["phase_epochs"],
            self.root,
        )
        return ResumePoint(
            epochs=state["epochs"],
            phase=state["phase"],
            phase_epochs=state["phase_epochs"],
            stopped=state["stopped"],
            folder=state["folder"],
            best_folder=state["best_folder"],
            extra=state["extra"],
            attempt=self.attempt,
            checkpoint=self,
        )

    def restore_variables(self, variables: Sequence, folder: str, label: str = "classifier"):
        """Assign the values saved in ``<folder>/variables.npz`` to ``variables``.

        Raises:
            CheckpointMismatch: the saved variables are not these (names, shapes).
        """
        self._assign(variables, os.path.join(self.root, folder, VARIABLES_FILE), label)

    def read_variables(
        self, variables: Sequence, folder: str, select: Sequence | None = None
    ) -> list[np.ndarray]:
        """The values saved in ``<folder>/variables.npz`` for ``variables`` (the sequence they
        were saved from, checked), or for the ``select`` ones among them (e.g.
        ``model.weights``: what ``model.get_weights()`` returns)."""
        path = os.path.join(self.root, folder, VARIABLES_FILE)
        values = self._read_checked(variables, path, "classifier")
        if select is None:
            return values
        by_variable = {id(v): value for v, value in zip(variables, values, strict=True)}
        return [by_variable[id(v)] for v in select]

    def restore_optimizer(self, optimizer, folder: str) -> None:
        """Assign the optimizer variables saved with epoch ``folder`` (the optimizer must be
        built: ``optimizer.build(model.trainable_variables)``)."""
        self._assign(
            optimizer.variables, os.path.join(self.root, folder, OPTIMIZER_FILE), "optimizer"
        )

    def _read_checked(self, variables: Sequence, path: str, label: str) -> list[np.ndarray]:
        """The saved arrays, once their count, shapes and dtypes are the variables' (names
        are not compared: Keras numbers unnamed layers per process)."""
        manifest = _read_json(f"{path}.json")
        expected = _variable_manifest(variables)
        kinds = [entry[1:] for entry in manifest]
        if kinds != [entry[1:] for entry in expected]:
            differ = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(manifest, expected, strict=False))
                    if a[1:] != b[1:]
                ),
                min(len(manifest), len(expected)),
            )
            raise CheckpointMismatch(
                f"Expected the checkpoint's {label} variables to be this run's "
                f"({len(expected)} variables). Received: {len(manifest)} in {path}; first "
                f"difference at #{differ}: saved "
                f"{manifest[differ] if differ < len(manifest) else None}, built "
                f"{expected[differ] if differ < len(expected) else None}"
            )
        with tempfile.TemporaryDirectory(prefix="checkpoint-") as tmp:
            return _load_arrays(path, tmp)

    def _assign(self, variables: Sequence, path: str, label: str) -> None:
        for variable, value in zip(
            variables, self._read_checked(variables, path, label), strict=True
        ):
            variable.assign(value)

    # -- writing ---------------------------------------------------------------------------

    def save(
        self,
        variables: Sequence,
        optimizer_variables: Sequence,
        *,
        epochs: int,
        phase: str,
        phase_epochs: int,
        stopped: bool,
        best_epoch: int,
        extra: dict,
    ) -> None:
        """Save the state after ``epochs`` epochs, then point ``state.json`` at it.

        Args:
            variables: every variable of the classifier (``model.variables``).
            optimizer_variables: the optimizer's (empty at the start).
            epochs: epochs completed over all phases (0: the start).
            phase, phase_epochs: the phase of that epoch and its epochs completed.
            stopped: early stopping ended the phase at this epoch.
            best_epoch: the best epoch so far (its folder is kept, 0: the start).
            extra: JSON: what the training needs to continue and to write its summary.
        """
        if not self.writer:
            return
        folder = epoch_folder(epochs)
        target = os.path.join(self.root, folder)
        if fileio.exists(target):  # a killed attempt's half-written folder for this epoch
            fileio.rmtree(target)
        fileio.makedirs(target)
        with tempfile.TemporaryDirectory(prefix="checkpoint-") as tmp:
            for name, group in ((VARIABLES_FILE, variables), (OPTIMIZER_FILE, optimizer_variables)):
                if not group:
                    continue
                path = os.path.join(target, name)
                _save_arrays(group, path, tmp)
                _write_json(f"{path}.json", _variable_manifest(group))
        best_folder = epoch_folder(best_epoch)
        _write_json(
            os.path.join(self.root, STATE_FILE),
            {
                "format": FORMAT,
                "fingerprint": self.fingerprint,
                "epochs": epochs,
                "phase": phase,
                "phase_epochs": phase_epochs,
                "stopped": stopped,
                "folder": folder,
                "best_folder": best_folder,
                "attempt": self.attempt,
                "extra": extra,
            },
        )
        self._remove_folders(keep=(folder, best_folder))

    def _remove_folders(self, keep: Sequence[str]) -> None:
        if not fileio.exists(self.root):
            return
        for name in fileio.listdir(self.root):
            name = name.rstrip("/")
            path = os.path.join(self.root, name)
            if name.startswith("epoch-") and name not in keep and fileio.isdir(path):
                fileio.rmtree(path)

    def report(self) -> list[dict]:
        """The attempts of this step so far, this one ``completed`` (for the summary)."""
        return [
            {**attempt, "outcome": attempt["outcome"] or "completed"} for attempt in self.attempts
        ]

    def finish(self) -> None:
        """Remove the checkpoint once the model is exported (the writer only)."""
        if self.writer and fileio.exists(self.root):
            fileio.rmtree(self.root)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the training's state at the end of every epoch (a no-op without a checkpoint).

    Put it after ``selection`` in the callbacks, so that the state it saves includes the
    epoch just ended.

    Args:
        checkpoint: where to save; None: nothing is saved.
        selection: the run's ``selection.BestEpoch`` (its state and best epoch are saved).
        history: the metrics of every epoch before the current ``fit`` (read, not changed).
        extra: JSON saved with every epoch (the start's metrics, the baselines).
    """

    def __init__(self, checkpoint: TrainingCheckpoint | None, selection, history: dict, extra):
        super().__init__()
        self.checkpoint = checkpoint
        self.selection = selection
        self.history = history
        self.extra = extra
        self.name = START
        self._phase: dict[str, list[float]] = {}

    def phase(self, name: str) -> EpochCheckpoint:
        """Before each ``fit``: the phase it runs; returns self."""
        self.name, self._phase = name, {}
        return self

    def save_start(self, model: keras.Model) -> None:
        """Save the starting model (epoch 0, the first candidate for the best weights)."""
        self._save(model, [], 0, 0, stopped=False)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self._phase.setdefault(key, []).append(float(value))
        model = self.model
        stopped = model.stop_training
        self._save(model, model.optimizer.variables, self.selection.epochs, epoch + 1, stopped)

    def _save(self, model, optimizer_variables, epochs, phase_epochs, stopped) -> None:
        if self.checkpoint is None:
            return
        keys = sorted(set(self.history) | set(self._phase))
        history = {k: [*self.history.get(k, []), *self._phase.get(k, [])] for k in keys}
        self.checkpoint.save(
            model.variables,
            optimizer_variables,
            epochs=epochs,
            phase=self.name,
            phase_epochs=phase_epochs,
            stopped=bool(stopped),
            best_epoch=self.selection.best_epoch,
            extra={**self.extra, "history": history, "selection": self.selection.state()},
        )


def skip_epochs(dataset, epochs: int) -> None:
    """Advance ``dataset``'s per-epoch randomness past ``epochs`` epochs, without reading it.

    A dataset shuffled with ``reshuffle_each_iteration=True`` (or ``Dataset.random`` with
    ``rerandomize_each_iteration=True``) draws new seeds each time an iterator is created.
    Keras 3.12's ``fit`` creates two iterators per epoch when the dataset's number of batches
    is known and one when it is not (``TFEpochIterator``: one at the start of each epoch, and
    one more at its end once the batch count is known), across ``fit`` calls alike. Creating
    as many here makes the resumed run's epoch ``k`` see the batches of an uninterrupted
    run's epoch ``k``. Iterators are created and dropped; nothing is read but a prefetch.
    """
    cardinality = int(dataset.cardinality())
    per_epoch = 2 if cardinality > 0 else 1
    for _ in range(per_epoch * epochs):
        iterator = iter(dataset)
        del iterator

"""Which weights a run ends with: the best epoch on the monitored metric, the start included.

The starting model (the head initialized from the linear probe, before any training) is
evaluated like an epoch and is the first candidate: a run never ends below its own start on
the eval split, on the monitored metric. Every later epoch (warm-up and fine-tuning) is a
candidate too; early stopping ends fine-tuning after ``patience`` epochs without improving on
the best so far.

>>> keeper = BestEpoch("val_crossentropy", start_value, model.get_weights(), patience=5)
>>> model.fit(..., callbacks=[keeper.phase(stopping=True)])
>>> keeper.restore(model)
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

START = "start"


def evaluate_start(model: keras.Model, dataset: tf.data.Dataset) -> dict[str, float]:
    """``{"crossentropy", "accuracy"}`` of ``model`` (inference mode) over ``dataset``: what
    an epoch's ``val_crossentropy`` and ``val_accuracy`` measure, with the same metrics.

    Not ``model.evaluate``: under ``MirroredStrategy``, Keras 3.12's ``evaluate`` before any
    ``fit`` builds the model from its first batch averaged over the replicas, and fails when
    that batch is split unevenly (a last, partial batch: 8 examples on one replica, 0 on the
    other). Every worker reads the whole dataset, so all agree on the start's value.
    """
    crossentropy = keras.metrics.SparseCategoricalCrossentropy()
    accuracy = keras.metrics.SparseCategoricalAccuracy()
    predict = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    for images, labels in dataset:
        probabilities = predict(images)
        crossentropy.update_state(labels, probabilities)
        accuracy.update_state(labels, probabilities)
    return {"crossentropy": float(crossentropy.result()), "accuracy": float(accuracy.result())}


class BestEpoch(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest ``monitor``, epoch 0 being the start.

    One object follows every ``fit()`` of the run (``phase()`` before each): epochs are
    counted across phases. A NaN never improves.

    Args:
        monitor: the log key compared (lower is better), e.g. ``"val_crossentropy"``.
        start_value: ``monitor`` of the starting model.
        start_weights: ``model.get_weights()`` of the starting model.
        patience: epochs without improvement before a phase with ``stopping`` stops.
    """

    def __init__(self, monitor: str, start_value: float, start_weights: list, patience: int):
        super().__init__()
        self.monitor = monitor
        self.best = float(start_value) if math.isfinite(start_value) else math.inf
        self.best_weights = start_weights
        self.best_epoch = 0
        self.best_phase = START
        self.patience = patience
        self.epochs = 0
        self.wait = 0
        self.stopping = False
        self.current_phase = START

    def phase(self, name: str, stopping: bool, resumed: bool = False) -> BestEpoch:
        """Start counting patience anew for the phase ``name``; returns self.

        ``resumed``: the phase continues where an interrupted run left it (``load_state``):
        its epochs without improvement still count."""
        if not (resumed and name == self.current_phase):
            self.wait = 0
        self.current_phase, self.stopping = name, stopping
        return self

    def state(self) -> dict:
        """What a checkpoint keeps to continue the selection in another process (JSON; the
        best weights are saved with the checkpoint's variables)."""
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "best_phase": self.best_phase,
            "epochs": self.epochs,
            "wait": self.wait,
            "phase": self.current_phase,
        }

    def load_state(self, state: dict, best_weights: list) -> None:
        """Continue from ``state()`` of an interrupted run; ``best_weights``: the weights of
        its best epoch (``model.get_weights()`` order)."""
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.best_phase, self.epochs = state["best_phase"], int(state["epochs"])
        self.wait, self.current_phase = int(state["wait"]), state["phase"]
        self.best_weights = best_weights

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(
                f"Expected the metric {self.monitor!r} in the epoch's logs. "
                f"Received: {sorted(logs or {})}"
            )
        if value < self.best:
            self.best, self.best_epoch = float(value), self.epochs
            self.best_phase, self.best_weights = self.current_phase, self.model.get_weights()
            self.wait = 0
            return
        self.wait += 1
        if self.stopping and self.wait >= self.patience:
            self.model.stop_training = True

    def restore(self, model: keras.Model) -> None:
        """Set ``model`` to the best weights seen."""
        model.set_weights(self.best_weights)

    def describe(self) -> str:
        """``"start"`` or ``"epoch 7 (fine-tuning)"``."""
        if self.best_epoch == 0:
            return START
        return f"epoch {self.best_epoch} ({self.best_phase})"

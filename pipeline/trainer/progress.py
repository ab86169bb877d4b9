"""The Trainer's epoch progress on the console of ``backbone-reg run``.

``backbone-reg run`` sends what the pipeline's steps print to its log file and leaves the
console's file descriptor in ``BACKBONE_REG_CONSOLE_FD``; the Trainer, which runs in the same
process, draws one progress line there. Where that variable is not set (Kubeflow pods,
``--verbose``, tests) nothing is drawn: Keras' own per-epoch lines are in the step's log.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import TextIO

CONSOLE_FD_ENV = "BACKBONE_REG_CONSOLE_FD"
METRIC = "val_accuracy"
BAR_WIDTH = 20
INDENT = " " * 8
# Without a terminal (CI logs) a line every this many epochs, and one at the end.
LINES_WITHOUT_TTY = 5


class EpochProgress:
    """One progress line for all the epochs of a training, with the validation metric.

    On a terminal the bar is redrawn in place after every epoch; elsewhere (a CI log, a
    pipe) a line is written every ``every`` epochs and one at the end, so a log keeps a few
    lines, not one per epoch.

    >>> progress = EpochProgress(total=4, stream=sys.stdout, tty=False, every=2)
    >>> for value in (0.5, 0.6, 0.7):
    ...     progress.epoch_end({"val_accuracy": value})
    >>> progress.finish()
            training [##########----------]  2/4 epochs  val_accuracy 0.6000
            training [###############-----]  3/4 epochs  val_accuracy 0.7000 (stopped early)

    Args:
        total: the most epochs the training may run (warm-up and fine-tuning together).
        stream: where to write (the console).
        tty: redraw in place; defaults to ``stream.isatty()``.
        every: without a terminal, write a line every this many epochs [default: about
            ``total / 5``].
        metric: the ``logs`` key to show.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO,
        tty: bool | None = None,
        every: int | None = None,
        metric: str = METRIC,
    ):
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"Expected total >= 1 epochs. Received: total={total!r}")
        self.total = total
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.every = every or max(1, math.ceil(total / LINES_WITHOUT_TTY))
        self.metric = metric
        self.epochs = 0
        self.value: float | None = None
        self._written = 0  # epochs shown in the last line written

    def line(self) -> str:
        filled = round(BAR_WIDTH * min(self.epochs, self.total) / self.total)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        width = len(str(self.total))
        text = f"{INDENT}training [{bar}] {self.epochs:>{width}}/{self.total} epochs"
        if self.value is not None:
            text += f"  {self.metric} {self.value:.4f}"
        return text

    def epoch_end(self, logs: Mapping[str, float] | None) -> None:
        self.epochs += 1
        value = (logs or {}).get(self.metric)
        self.value = None if value is None else float(value)
        if self.tty:
            self._write("\r" + self.line())
        elif self.epochs % self.every == 0:
            self._write(self.line() + "\n")
        self._written = self.epochs

    def finish(self) -> None:
        """End the line; say so when training stopped before ``total`` epochs."""
        early = " (stopped early)" if self.epochs < self.total else ""
        if self.tty:
            self._write("\r" + self.line() + early + "\n")
        elif self.epochs % self.every or early:
            self._write(self.line() + early + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def console_progress(total: int, environ: Mapping[str, str] | None = None) -> EpochProgress | None:
    """An ``EpochProgress`` on the console ``backbone-reg run`` left in ``CONSOLE_FD_ENV``.

    None when the variable is not set (no console to draw on) or names no open descriptor.
    """
    value = (os.environ if environ is None else environ).get(CONSOLE_FD_ENV)
    if not value:
        return None
    try:
        stream = os.fdopen(int(value), "w", buffering=1, closefd=False)
    except (ValueError, OSError):
        return None
    return EpochProgress(total, stream)


def keras_callback(progress: EpochProgress):
    """A Keras callback that feeds ``progress`` at the end of every epoch."""
    import keras

    class _Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            progress.epoch_end(logs)

    return _Progress()

"""The Trainer's epoch progress line (`backbone_regularizer.pipeline.trainer.progress`)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from backbone_regularizer.pipeline.trainer.progress import (
    CONSOLE_FD_ENV,
    EpochProgress,
    console_progress,
    keras_callback,
)


def test_without_a_terminal_a_line_every_few_epochs_and_one_at_the_end():
    out = io.StringIO()
    progress = EpochProgress(total=10, stream=out, tty=False)  # every 2 epochs
    for epoch in range(7):
        progress.epoch_end({"val_accuracy": 0.5 + epoch / 100, "loss": 1.0})
    progress.finish()
    assert out.getvalue().splitlines() == [
        "        training [####----------------]  2/10 epochs  val_accuracy 0.5100",
        "        training [########------------]  4/10 epochs  val_accuracy 0.5300",
        "        training [############--------]  6/10 epochs  val_accuracy 0.5500",
        "        training [##############------]  7/10 epochs  val_accuracy 0.5600 (stopped early)",
    ]


def test_all_epochs_end_on_the_last_line_once():
    out = io.StringIO()
    progress = EpochProgress(total=4, stream=out, tty=False, every=2)
    for _ in range(4):
        progress.epoch_end({"val_accuracy": 0.75})
    progress.finish()
    assert out.getvalue().splitlines()[-1] == (
        "        training [####################] 4/4 epochs  val_accuracy 0.7500"
    )
    assert len(out.getvalue().splitlines()) == 2


def test_on_a_terminal_one_line_is_redrawn():
    out = io.StringIO()
    progress = EpochProgress(total=3, stream=out, tty=True)
    progress.epoch_end({"val_accuracy": 0.5})
    progress.epoch_end({})
    progress.finish()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("2/3 epochs (stopped early)\n")
    assert text.count("\r") == 3
    assert "val_accuracy 0.5000" in text.split("\r")[1]


def test_console_progress_needs_the_console_descriptor(tmp_path):
    assert console_progress(5, environ={}) is None
    assert console_progress(5, environ={CONSOLE_FD_ENV: "not a number"}) is None
    read_end, write_end = os.pipe()
    try:
        progress = console_progress(2, environ={CONSOLE_FD_ENV: str(write_end)})
        assert progress is not None and progress.tty is False
        progress.epoch_end({"val_accuracy": 1.0})
        progress.epoch_end({"val_accuracy": 1.0})
        progress.finish()
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            assert pipe.read().endswith("2/2 epochs  val_accuracy 1.0000\n")
    finally:
        for fd in (read_end, write_end):
            try:
                os.close(fd)
            except OSError:
                pass


def test_the_keras_callback_counts_the_epochs_of_a_real_fit():
    import keras

    out = io.StringIO()
    progress = EpochProgress(total=3, stream=out, tty=False, every=1)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.zeros((8, 2), "float32"), np.zeros((8,), "int32")
    model.fit(
        x, y, validation_data=(x, y), epochs=3, verbose=0, callbacks=[keras_callback(progress)]
    )
    progress.finish()
    lines = out.getvalue().splitlines()
    assert [line.split("]")[1].split("epochs")[0].strip() for line in lines] == [
        "1/3",
        "2/3",
        "3/3",
    ]
    assert all("val_accuracy 1.0000" in line for line in lines)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_a_total_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="Expected total >= 1 epochs"):
        EpochProgress(bad, io.StringIO())

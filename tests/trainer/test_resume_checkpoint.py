"""The Trainer's checkpoint (pipeline/trainer/checkpoint.py): written atomically, read back
exactly, refused when it belongs to another training, and the data order it resumes with."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from backbone_regularizer.components.regularizer import RegularizationSpec
from backbone_regularizer.components.regularizer.penalties import L2SP
from backbone_regularizer.pipeline.lineage.summary import describe_attempts
from backbone_regularizer.pipeline.trainer import checkpoint as ckpt
from backbone_regularizer.pipeline.trainer.base_model import load_regularized_base
from backbone_regularizer.pipeline.trainer.checkpoint import (
    CheckpointMismatch,
    TrainingCheckpoint,
    skip_epochs,
)
from backbone_regularizer.pipeline.trainer.config import TrainerConfig
from backbone_regularizer.pipeline.trainer.module import build_classifier, train
from tests.trainer.artifacts import regularized_artifact, small_cnn
from tests.trainer.tfrecords import write_split


def tiny_model(units: int = 3, seed: int = 0) -> keras.Model:
    inputs = keras.Input((4,))
    hidden = keras.layers.Dropout(0.5, seed=seed)(keras.layers.Dense(units, name="a")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="b")(hidden))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    return model


def trained(model: keras.Model, steps: int = 3) -> keras.Model:
    x = np.linspace(0, 1, 32, dtype="float32").reshape(8, 4)
    model.fit(x, np.ones((8, 2), "float32"), epochs=steps, verbose=0)
    return model


def save(checkpoint, model, epochs, best_epoch=None, phase="fine-tuning", stopped=False):
    checkpoint.save(
        model.variables,
        model.optimizer.variables if model.optimizer.built else [],
        epochs=epochs,
        phase=phase,
        phase_epochs=epochs,
        stopped=stopped,
        best_epoch=epochs if best_epoch is None else best_epoch,
        extra={"history": {"loss": [0.5] * epochs}},
    )


def test_a_second_attempt_resumes_where_the_first_saved_and_records_both(tmp_path):
    first = TrainingCheckpoint(str(tmp_path), "abc")
    assert first.begin_attempt({"KFP_POD_NAME": "pod-1"}) is None
    model = trained(tiny_model())
    save(first, model, epochs=2, best_epoch=1)
    # A third epoch's folder half-written when the pod died: state.json does not name it.
    (tmp_path / "checkpoint" / ckpt.epoch_folder(3)).mkdir()

    second = TrainingCheckpoint(str(tmp_path), "abc")
    resume = second.begin_attempt({"KFP_POD_NAME": "pod-2"})
    assert (resume.epochs, resume.phase, resume.phase_epochs, resume.stopped) == (
        2,
        "fine-tuning",
        2,
        False,
    )
    assert (resume.folder, resume.best_folder, resume.attempt) == ("epoch-0002", "epoch-0001", 2)
    assert resume.extra == {"history": {"loss": [0.5, 0.5]}}
    attempts = json.loads((tmp_path / "checkpoint" / "attempts.json").read_text())
    assert [(a["attempt"], a["pod"], a["outcome"]) for a in attempts] == [
        (1, "pod-1", "interrupted"),
        (2, "pod-2", None),
    ]
    assert attempts[0]["epochs_completed_before_interruption"] == 2
    assert (attempts[0]["resumed_from_epoch"], attempts[1]["resumed_from_epoch"]) == (None, 2)

    # Exactly the values: weights, dropout seed state, optimizer step and moments.
    fresh = tiny_model(seed=0)
    fresh.optimizer.build(fresh.trainable_variables)
    second.restore_variables(fresh.variables, resume.folder)
    second.restore_optimizer(fresh.optimizer, resume.folder)
    for saved, restored in [(model.variables, fresh.variables)] + [
        (model.optimizer.variables, fresh.optimizer.variables)
    ]:
        for a, b in zip(saved, restored, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(fresh.optimizer.iterations.numpy()) == 3

    assert [a["outcome"] for a in second.report()] == ["interrupted", "completed"]
    second.finish()
    assert not (tmp_path / "checkpoint").exists()


def test_only_the_last_and_the_best_epoch_are_kept(tmp_path):
    checkpoint = TrainingCheckpoint(str(tmp_path), "abc")
    checkpoint.begin_attempt({})
    model = trained(tiny_model(), steps=1)
    for epoch in range(4):
        save(checkpoint, model, epochs=epoch, best_epoch=1 if epoch else 0)
    folders = sorted(p.name for p in (tmp_path / "checkpoint").iterdir() if p.is_dir())
    assert folders == ["epoch-0001", "epoch-0003"]
    best = checkpoint.read_variables(model.variables, "epoch-0001", select=model.weights)
    assert len(best) == len(model.get_weights()) == 4  # without the dropout's seed state
    for saved, value in zip(best, model.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, value)
    # The start (epoch 0) is saved before any fit: no optimizer file.
    assert not (tmp_path / "checkpoint" / "epoch-0000").exists()


def test_a_checkpoint_of_another_training_is_refused(tmp_path):
    checkpoint = TrainingCheckpoint(str(tmp_path), "a" * 64)
    checkpoint.begin_attempt({})
    save(checkpoint, trained(tiny_model(), 1), epochs=1)
    with pytest.raises(CheckpointMismatch) as error:
        TrainingCheckpoint(str(tmp_path), "b" * 64).begin_attempt({})
    assert str(error.value) == (
        f"Expected the checkpoint in {tmp_path}/checkpoint to be one of this training "
        "(fingerprint bbbbbbbbbbbb, format 1). Received: fingerprint aaaaaaaaaaaa, format 1: "
        "another Trainer config, base model or data wrote it. Delete the folder to start over."
    )


def test_variables_that_are_not_the_classifiers_are_refused(tmp_path):
    checkpoint = TrainingCheckpoint(str(tmp_path), "abc")
    checkpoint.begin_attempt({})
    save(checkpoint, trained(tiny_model(units=3), 1), epochs=1)
    other = tiny_model(units=5)
    with pytest.raises(CheckpointMismatch) as error:
        checkpoint.restore_variables(other.variables, "epoch-0001")
    assert str(error.value).startswith(
        "Expected the checkpoint's classifier variables to be this run's (5 variables). "
        "Received: 5 in "
    )
    assert str(error.value).endswith(
        "first difference at #0: saved ['a/kernel', [4, 3], 'float32'], "
        "built ['a/kernel', [4, 5], 'float32']"
    )


def test_fingerprint_is_stable_and_sensitive():
    parts = {"config": {"epochs": 3}, "weights_sha256": "x"}
    assert ckpt.fingerprint(parts) == ckpt.fingerprint(dict(reversed(parts.items())))
    assert ckpt.fingerprint(parts) != ckpt.fingerprint({**parts, "weights_sha256": "y"})


def shuffled(unknown_cardinality: bool) -> tf.data.Dataset:
    dataset = tf.data.Dataset.range(16)
    if unknown_cardinality:
        dataset = dataset.filter(lambda x: True)
    dataset = dataset.shuffle(16, seed=1, reshuffle_each_iteration=True)
    return dataset.map(lambda x: (tf.cast([x], tf.float32), tf.cast([x], tf.float32))).batch(16)


def orders_seen_by_fit(dataset: tf.data.Dataset, phases: list[int]) -> list[tuple]:
    """The order of the examples in each epoch, over ``fit`` calls of ``phases`` epochs."""
    seen = []

    class Recorder(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

        def train_step(self, data):
            seen.append(tuple(int(v) for v in data[0].numpy().ravel()))
            return super().train_step(data)

    model = Recorder()
    model.compile("sgd", "mse", run_eagerly=True)
    for epochs in phases:
        model.fit(dataset, epochs=epochs, verbose=0)
    return seen


@pytest.mark.parametrize("unknown_cardinality", [False, True])
def test_skip_epochs_gives_the_resumed_fit_the_uninterrupted_data_order(unknown_cardinality):
    uninterrupted = orders_seen_by_fit(shuffled(unknown_cardinality), [2, 3])  # warm-up, fine-tune
    assert len(set(uninterrupted)) == 5  # every epoch its own order
    for done in range(1, 5):
        dataset = shuffled(unknown_cardinality)
        skip_epochs(dataset, done)
        assert orders_seen_by_fit(dataset, [5 - done]) == uninterrupted[done:], done


def l2sp_regularizers(model: keras.Model) -> list:
    return [
        (variable, variable.regularizer)
        for variable in model.weights
        if isinstance(getattr(variable, "regularizer", None), L2SP)
    ]


def test_a_resumed_classifier_keeps_the_pretrained_anchors_and_its_penalties(tmp_path):
    """What a retried Trainer does: load the base artifact again, build the classifier,
    restore the checkpoint's values. The L2-SP anchors stay the pre-trained weights."""
    uri = regularized_artifact(tmp_path, RegularizationSpec(l2_sp=0.1), small_cnn())
    config = TrainerConfig(num_classes=2, baselines=False, head_init="random")
    base, _ = load_regularized_base(str(uri / "Format-Serving"))
    trained = build_classifier(base, config, mixed_precision=False)
    pretrained = {v.path: v.numpy() for v, _ in l2sp_regularizers(trained)}
    assert pretrained and sum(float(x) for x in trained.losses) == 0.0  # at the anchors
    for variable in trained.trainable_variables:  # what epochs of training do
        variable.assign(variable + 0.25)
    penalty = sum(float(x) for x in trained.losses)
    checkpoint = TrainingCheckpoint(str(tmp_path / "run"), "abc")
    checkpoint.begin_attempt({})
    checkpoint.save(
        trained.variables,
        [],
        epochs=1,
        phase="fine-tuning",
        phase_epochs=1,
        stopped=False,
        best_epoch=1,
        extra={},
    )

    base, _ = load_regularized_base(str(uri / "Format-Serving"))
    resumed = build_classifier(base, config, mixed_precision=False)
    checkpoint.restore_variables(resumed.variables, "epoch-0001")
    for variable, regularizer in l2sp_regularizers(resumed):
        np.testing.assert_array_equal(regularizer.anchor_numpy(), pretrained[variable.path])
        assert not np.array_equal(variable.numpy(), pretrained[variable.path])  # trained
    assert len(resumed.losses) == len(trained.losses) == len(pretrained)
    assert sum(float(x) for x in resumed.losses) == pytest.approx(penalty, rel=1e-6)
    assert penalty > 0


def test_the_run_summary_line_names_each_attempt():
    attempts = [
        {"attempt": 1, "pod": "p-1", "resumed_from_epoch": None, "outcome": "interrupted"},
        {"attempt": 2, "pod": None, "resumed_from_epoch": 2, "outcome": "interrupted"},
        {"attempt": 3, "pod": "p-3", "resumed_from_epoch": 2, "outcome": "completed"},
    ]
    attempts[0]["epochs_completed_before_interruption"] = 2
    attempts[1]["epochs_completed_before_interruption"] = 2
    assert describe_attempts(attempts) == (
        "3 attempts: 1 interrupted after epoch 2 (pod p-1); 2 resumed from epoch 2, "
        "interrupted after epoch 2; "
        "3 resumed from epoch 2, completed (pod p-3)"
    )
    assert describe_attempts(attempts[2:]) is None  # ran once
    assert describe_attempts(None) is None


def test_a_retry_after_the_last_epoch_only_restores_the_best_weights(tmp_path):
    """Killed after its last epoch's checkpoint (while exporting): the retry runs no epoch,
    no baseline and no start evaluation again, and ends with the same model and summary."""
    uri = regularized_artifact(tmp_path, RegularizationSpec(l2_sp=0.01), small_cnn())
    config = TrainerConfig(num_classes=2, epochs=2, warmup_epochs=1, batch_size=8)
    train_files = write_split(tmp_path / "train", 8)
    eval_files = write_split(tmp_path / "eval", 4)
    strategy = tf.distribute.get_strategy()
    runs = []
    for _ in range(2):
        base, report = load_regularized_base(str(uri / "Format-Serving"))
        checkpoint = TrainingCheckpoint(str(tmp_path / "run"), "same training")
        classifier, summary = train(
            base,
            report,
            config,
            train_files,
            eval_files,
            str(tmp_path / "run"),
            strategy,
            False,
            checkpoint,
        )
        runs.append((classifier.get_weights(), summary))
    (first_weights, first), (second_weights, second) = runs
    assert [a["outcome"] for a in second.pop("attempts")] == ["interrupted", "completed"]
    assert first.pop("attempts")[0]["outcome"] == "completed"
    assert second == first  # history, best epoch, start, baselines: from the checkpoint
    for a, b in zip(first_weights, second_weights, strict=True):
        np.testing.assert_array_equal(a, b)

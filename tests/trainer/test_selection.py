"""The best-epoch rule: the start is epoch 0 and a candidate, patience counts per phase."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from backbone_regularizer.pipeline.trainer.selection import BestEpoch, evaluate_start


def model_and_keeper(start_value=1.0, patience=2):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    keeper = BestEpoch("val_crossentropy", start_value, model.get_weights(), patience)
    keeper.set_model(model)
    return model, keeper


def epoch(model, keeper, value, index):
    """One 'epoch': the weights change, then the epoch ends with ``value``."""
    model.layers[0].bias.assign([float(index + 1)])
    keeper.on_epoch_end(index, {"val_crossentropy": value})


def test_when_no_epoch_beats_the_start_the_run_ends_on_the_start():
    model, keeper = model_and_keeper(start_value=0.5)
    start = [w.copy() for w in model.get_weights()]
    keeper.phase("fine-tuning", stopping=True)
    for index, value in enumerate([0.9, 0.7]):
        epoch(model, keeper, value, index)
    assert model.stop_training is True  # 2 epochs without improving on the start
    keeper.restore(model)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), start, strict=True))
    assert keeper.best_epoch == 0 and keeper.describe() == "start" and keeper.best == 0.5


def test_epochs_are_counted_across_phases_and_patience_restarts_per_phase():
    model, keeper = model_and_keeper(start_value=1.0, patience=2)
    keeper.phase("warm-up", stopping=False)
    for index, value in enumerate([0.8, 0.9, 0.95]):  # warm-up never stops
        epoch(model, keeper, value, index)
    assert not getattr(model, "stop_training", False) and keeper.wait == 2
    keeper.phase("fine-tuning", stopping=True)
    assert keeper.wait == 0
    epoch(model, keeper, 0.6, 0)  # the run's 4th epoch
    expected = [w.copy() for w in model.get_weights()]
    epoch(model, keeper, math.nan, 1)  # NaN never improves
    epoch(model, keeper, 0.6, 2)  # equal is not better
    assert model.stop_training is True
    keeper.restore(model)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), expected, strict=True))
    assert keeper.describe() == "epoch 4 (fine-tuning)" and keeper.best == 0.6


def test_a_start_without_a_finite_value_loses_to_any_epoch():
    model, keeper = model_and_keeper(start_value=math.nan)
    keeper.phase("fine-tuning", stopping=True)
    epoch(model, keeper, 3.0, 0)
    assert keeper.describe() == "epoch 1 (fine-tuning)"


def test_a_missing_metric_is_an_error():
    _, keeper = model_and_keeper()
    with pytest.raises(ValueError, match=r"Expected the metric 'val_crossentropy'.*\['loss'\]"):
        keeper.on_epoch_end(0, {"loss": 1.0})


def test_the_start_is_measured_as_keras_measures_an_epoch():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.compile(
        loss="sparse_categorical_crossentropy",
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseCategoricalCrossentropy(name="crossentropy"),
        ],
    )
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices(
        (rng.normal(size=(21, 4)).astype("float32"), rng.integers(0, 3, 21))
    ).batch(8)  # a partial last batch
    expected = model.evaluate(data, return_dict=True, verbose=0)
    start = evaluate_start(model, data)
    assert start["crossentropy"] == pytest.approx(expected["crossentropy"], rel=1e-6)
    assert start["accuracy"] == pytest.approx(expected["accuracy"])

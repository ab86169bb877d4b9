"""Baselines fitted on the actual split: real scikit-learn models, real Keras features."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from backbone_regularizer.pipeline.trainer import baselines


def _blobs(n_per_class, classes=5, dim=48, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * 3
    y = np.repeat(np.arange(classes), n_per_class)
    x = centers[y] + rng.normal(size=(len(y), dim)) * spread
    shape = (4, 4, 3) if dim == 48 else (dim,)
    return x.reshape(len(y), *shape).astype("float32"), y


def test_separable_split_reaches_one():
    train_x, train_y = _blobs(10, seed=0)
    eval_x, eval_y = _blobs(40, seed=0)
    result = baselines.logistic_regression(train_x, train_y, eval_x, eval_y)
    assert result["eval_accuracy"] == 1.0
    assert result["train_examples"] == 50 and result["eval_examples"] == 200
    assert result["features"] == 48


def test_label_noise_is_near_chance():
    rng = np.random.default_rng(1)
    train_x = rng.normal(size=(200, 48)).astype("float32")
    eval_x = rng.normal(size=(1000, 48)).astype("float32")
    train_y, eval_y = rng.integers(0, 5, 200), rng.integers(0, 5, 1000)
    result = baselines.logistic_regression(train_x, train_y, eval_x, eval_y)
    assert result["train_accuracy"] > 0.45  # it fits the noise ...
    assert 0.12 < result["eval_accuracy"] < 0.28  # ... and generalizes at chance (0.2)


@pytest.mark.parametrize("classes, standardize", [(2, True), (5, True), (5, False)])
def test_probe_head_weights_reproduce_the_regression(classes, standardize):
    x, y = _blobs(20, classes=classes, dim=16, spread=2.0)
    x = x.reshape(len(x), -1)
    model = baselines.fit_logistic_regression(x, y, standardize=standardize)
    head = keras.layers.Dense(classes, activation="softmax")
    head.build((None, 16))
    baselines.init_head_from_probe(head, model, classes)
    np.testing.assert_allclose(head(x).numpy(), model.predict_proba(x), atol=1e-4)


@pytest.mark.parametrize("present", [[0, 2, 3], [1, 3]])
def test_probe_head_never_predicts_a_class_without_training_examples(present):
    """A span without class 1 (or 0 and 2): the other classes keep their index and the head
    reproduces the regression on them; the absent ones get ~0 probability."""
    x, y = _blobs(20, classes=4, dim=16, spread=2.0)
    keep = np.isin(y, present)
    x, y = x.reshape(len(x), -1)[keep], y[keep]
    model = baselines.fit_logistic_regression(x, y)
    head = keras.layers.Dense(4, activation="softmax")
    head.build((None, 16))
    baselines.init_head_from_probe(head, model, 4)
    probabilities = head(x).numpy()
    np.testing.assert_allclose(probabilities[:, present], model.predict_proba(x), atol=1e-4)
    assert probabilities[:, [c for c in range(4) if c not in present]].max() < 1e-6


def test_probe_head_weights_refuse_a_label_outside_the_head():
    x, y = _blobs(5, classes=3, dim=16)
    model = baselines.fit_logistic_regression(x.reshape(len(x), -1), y)
    with pytest.raises(
        ValueError, match=r"Expected training labels in 0..1 .* classes=\[0, 1, 2\]"
    ):
        baselines.probe_head_weights(model, 2)


def test_run_baselines_on_datasets_uses_the_backbone_features():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3))
    base = keras.Model(inputs, keras.layers.Conv2D(8, 1)(inputs))
    train_x, train_y = _blobs(10)
    eval_x, eval_y = _blobs(30, seed=0)
    train_ds = tf.data.Dataset.from_tensor_slices((train_x, train_y)).batch(16)
    eval_ds = tf.data.Dataset.from_tensor_slices((eval_x, eval_y)).batch(16)
    result = baselines.run_baselines(base, train_ds, eval_ds)
    pixels, probe = result[baselines.PIXELS], result[baselines.PROBE]
    assert pixels["features"] == 48 and probe["features"] == 8  # pooled conv channels
    assert pixels["eval_examples"] == probe["eval_examples"] == 150
    assert pixels["eval_accuracy"] == 1.0
    assert set(baselines.summary_entry(result)) == {baselines.PIXELS, baselines.PROBE}

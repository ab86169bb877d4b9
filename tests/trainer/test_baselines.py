"""Baselines fitted on the actual split: real scikit-learn models, real Keras features."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from backbone_regularizer.pipeline.trainer import baselines
from backbone_regularizer.pipeline.trainer.sample import stratified_sample
from tests.trainer.tfrecords import write_split


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


def _near_constant_features(seed=0):
    """5 informative features and 5 that barely vary (spread 1e-7 around 3)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 40)
    informative = rng.normal(size=(3, 5))[y] * 2 + rng.normal(size=(120, 5))
    constant = 3 + rng.normal(size=(120, 5)) * 1e-7
    return np.concatenate([informative, constant], axis=1).astype("float32"), y


def sensitivity(kernel, x):
    """Largest logit change when the features move by their typical magnitude (rms)."""
    return np.linalg.norm(kernel, axis=0).max() * np.sqrt(np.mean(np.square(x, dtype="float64")))


def test_folding_is_bounded_for_near_constant_features(monkeypatch):
    x, y = _near_constant_features()
    monkeypatch.setattr(baselines, "SCALE_FLOOR", 0.0)  # plain standardization
    unbounded, _ = baselines.probe_head_weights(baselines.fit_logistic_regression(x, y), 3)
    assert sensitivity(unbounded, x) > 1e4  # 1/scale of the near-constant features
    monkeypatch.undo()
    model = baselines.fit_logistic_regression(x, y)
    kernel, bias = baselines.probe_head_weights(model, 3)
    scaler, regression = model[0], model[-1]
    rms = np.sqrt(np.mean(np.square(x, dtype="float64")))
    np.testing.assert_allclose(scaler.scale_[5:], baselines.SCALE_FLOOR * rms)  # floored
    bound = np.abs(regression.coef_).max() / baselines.SCALE_FLOOR
    assert np.abs(kernel).max() * rms <= bound * (1 + 1e-6)
    # The folded head is still exactly the regression.
    logits = x @ kernel + bias
    np.testing.assert_allclose(keras.ops.softmax(logits).numpy(), model.predict_proba(x), atol=1e-4)


def logit_spread(kernel, bias, x):
    return np.mean(np.std(x @ kernel + bias, axis=1))


def test_the_head_is_tempered_to_the_logit_cap_with_the_same_predictions(monkeypatch):
    x, y = _blobs(20, classes=4, dim=16, spread=0.05)  # separable: large logits
    x = x.reshape(len(x), -1)
    model = baselines.fit_logistic_regression(x, y)
    exact = baselines.probe_head_weights(model, 4)
    assert logit_spread(*exact, x) < baselines.MAX_LOGIT_STD  # C=1 keeps a fit below it
    monkeypatch.setattr(baselines, "MAX_LOGIT_STD", logit_spread(*exact, x) / 4)
    kernel, bias = baselines.probe_head_weights(model, 4, train_x=x)
    assert logit_spread(kernel, bias, x) == pytest.approx(baselines.MAX_LOGIT_STD, rel=1e-5)
    np.testing.assert_array_equal((x @ kernel + bias).argmax(axis=1), model.predict(x))
    # Below the cap, nothing changes.
    monkeypatch.setattr(baselines, "MAX_LOGIT_STD", logit_spread(*exact, x) * 2)
    tempered = baselines.probe_head_weights(model, 4, train_x=x)
    np.testing.assert_array_equal(tempered[0], exact[0])


def test_weights_make_the_fit_and_the_accuracy_those_of_the_split():
    x, y = _blobs(30, classes=2, dim=16, spread=4.0)
    x = x.reshape(len(x), -1)
    plain = baselines.logistic_regression(x, y, x, y)
    # Doubling every example of class 0 by weight 2 is the same as repeating it.
    weights = np.where(y == 0, 2.0, 1.0)
    weighted = baselines.logistic_regression(x, y, x, y, train_weight=weights, eval_weight=weights)
    repeated_x, repeated_y = np.concatenate([x, x[y == 0]]), np.concatenate([y, y[y == 0]])
    repeated = baselines.logistic_regression(repeated_x, repeated_y, repeated_x, repeated_y)
    assert weighted["eval_accuracy"] == pytest.approx(repeated["eval_accuracy"])
    assert plain["train_examples"] == weighted["train_examples"] == 60


def test_run_baselines_on_samples_uses_the_backbone_features_and_states_sizes(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    base = keras.Model(inputs, keras.layers.Conv2D(8, 1)(inputs))
    train_files = write_split(tmp_path / "train", per_class=30)  # 2 classes
    eval_files = write_split(tmp_path / "eval", per_class=15)
    train = stratified_sample(tf.io.gfile.glob(train_files), 2, max_examples=30)
    eval_ = stratified_sample(tf.io.gfile.glob(eval_files), 2, max_examples=300)
    result = baselines.run_baselines(
        base, train, eval_, image_size=(32, 32), preprocessing="mobilenet_v2", pixel_size=(8, 8)
    )
    pixels, probe = result[baselines.PIXELS], result[baselines.PROBE]
    assert pixels["features"] == 8 * 8 * 3 and pixels["image_size"] == [8, 8]
    assert probe["features"] == 8  # pooled conv channels
    for entry in (pixels, probe):
        assert entry["train_examples"] == 30 and entry["train_split_examples"] == 60
        assert entry["eval_examples"] == entry["eval_split_examples"] == 30
    assert pixels["eval_accuracy"] == 1.0  # brightness separates the classes
    assert result["probe_train_features"].shape == (30, 8)  # 15 of each class
    assert result["probe_train_features"].dtype == np.float32
    assert set(baselines.summary_entry(result)) == {baselines.PIXELS, baselines.PROBE}

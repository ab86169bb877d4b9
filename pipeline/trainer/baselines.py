"""What fine-tuning must beat, measured on a bounded sample of the run's own train/eval split.

Two scikit-learn logistic regressions (multinomial, L2, ``C=1``), fitted on a stratified
sample of the training split and scored on one of the eval split (``sample``: at most
``baseline_max_examples`` per split, so their cost does not grow with the data):

* **pixels**: on the flattened images as the model sees them (after ``preprocess_input``, for
  MobileNetV2 the raw pixels scaled to [-1, 1]), resized to ``pixel_size`` (32x32 by default),
  not standardized: standardizing amplifies near-constant border pixels and cost this
  baseline ~3 points on the demo split;
* **linear probe**: on the frozen backbone's features pooled as the head pools them,
  standardized (feature scales differ by orders of magnitude), i.e. what the pre-trained
  features give without any fine-tuning.

When a class is sampled at a different rate than another (the split is larger than the
sample and unbalanced), examples are weighted by ``N_c / n_c`` in the fit and in the accuracy,
so both estimate what a fit on the whole split would give.

The probe also initializes the classifier's head (``probe_head_weights``): fine-tuning then
starts from the probe's accuracy instead of from chance (head-only warm-up in closed form).
Folding the standardization into the head divides by each feature's spread, so two bounds
keep the head sane under fine-tuning (see ``fit_logistic_regression`` and
``probe_head_weights``).

>>> result = logistic_regression(train_x, train_y, eval_x, eval_y)
>>> result["eval_accuracy"], result["train_accuracy"]
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from backbone_regularizer.pipeline.trainer import head as trainer_head
from backbone_regularizer.pipeline.trainer.data import load_example
from backbone_regularizer.pipeline.trainer.preprocessing import preprocess_fn
from backbone_regularizer.pipeline.trainer.sample import Sample

PIXELS = "pixels_logistic_regression"
PROBE = "linear_probe"
# A feature's spread (standard deviation over the sample) is floored at this fraction of the
# features' typical magnitude (their root mean square): see `fit_logistic_regression`.
SCALE_FLOOR = 0.05
# Largest spread (standard deviation across classes, averaged over the training sample) of the
# folded head's logits: see `probe_head_weights`.
MAX_LOGIT_STD = 10.0
# The head's starting bias for a class without training examples: exp(-30) ~ 1e-13.
ABSENT_CLASS_BIAS = -30.0


def sample_features(
    base: keras.Model,
    sample: Sample,
    image_size: tuple[int, int],
    preprocessing: str | dict,
    pixel_size: tuple[int, int],
    pooling: str = "avg",
    backbone_output: str | int | None = None,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """The sample's pixels at ``pixel_size`` and backbone features, both float32 ``[n, ...]``.

    Images are decoded batch by batch: only the two feature arrays are held. The backbone's
    output is chosen and pooled by ``trainer_head.pooled_features``, the same function the
    head uses (feature maps, token sequences, dict outputs), so the probe fits the head.
    """
    inputs = keras.Input((*image_size, 3))
    pooled = trainer_head.pooled_features(base(inputs), pooling, backbone_output)
    extractor = keras.Model(inputs, pooled)
    preprocess = preprocess_fn(preprocessing)
    images = (
        tf.data.Dataset.from_tensor_slices(list(sample.records))
        .map(lambda r: load_example(r, image_size)[0], num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .map(preprocess)
        .prefetch(2)
    )
    pixels, features = [], []
    for batch in images:
        small = batch
        if tuple(pixel_size) != tuple(image_size):
            small = tf.image.resize(batch, pixel_size, antialias=True)
        pixels.append(np.asarray(small, "float32").reshape(len(small), -1))
        features.append(np.asarray(extractor(batch, training=False), "float32"))
    return np.concatenate(pixels), np.concatenate(features)


class _FlooredScaler:
    """StandardScaler whose scales are floored (see ``fit_logistic_regression``)."""

    def __init__(self, standardize: bool):
        self.standardize = standardize

    def fit(self, x, y=None, sample_weight=None):
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler(with_mean=self.standardize, with_std=self.standardize)
        scaler.fit(x, sample_weight=sample_weight)
        self.mean_, self.scale_ = scaler.mean_, scaler.scale_
        if self.standardize:
            typical = np.sqrt(np.average(np.square(x), weights=sample_weight, axis=0).mean())
            self.scale_ = np.maximum(self.scale_, SCALE_FLOOR * typical)
        return self

    def transform(self, x):
        x = np.asarray(x, "float64")
        return (x - self.mean_) / self.scale_ if self.standardize else x


def fit_logistic_regression(
    x: np.ndarray,
    y: np.ndarray,
    seed: int = 0,
    standardize: bool = True,
    sample_weight: np.ndarray | None = None,
):
    """(Standardize, then) multinomial logistic regression; returns the fitted sklearn pipeline.

    Standardization divides each feature by its spread ``s_j``; the folded head then divides
    by it too, so a feature that is almost constant over the sample (a dead channel, or most
    channels of an untrained backbone) gets a kernel row ~``1/s_j`` large, and fine-tuning,
    which moves every feature by a fraction of its magnitude, swings the logits by that much
    (kernels of ~6,000 and a first-epoch cross-entropy of 12-16 were seen). Hence
    ``s_j >= SCALE_FLOOR * rms(x)``: a feature varying by less than 5% of the features'
    typical magnitude is read at that resolution, not amplified to unit variance.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    # float64 here only: lbfgs computes in float64 anyway; the sample bounds the copy.
    x = np.asarray(x, "float64").reshape(len(x), -1)
    scaler = _FlooredScaler(standardize).fit(x, sample_weight=sample_weight)
    regression = LogisticRegression(max_iter=5000, random_state=seed)
    regression.fit(scaler.transform(x), y, sample_weight=sample_weight)
    return Pipeline([("scale", scaler), ("regression", regression)])


def logistic_regression(
    train_x: np.ndarray,
    train_y: np.ndarray,
    eval_x: np.ndarray,
    eval_y: np.ndarray,
    seed: int = 0,
    standardize: bool = True,
    train_weight: np.ndarray | None = None,
    eval_weight: np.ndarray | None = None,
) -> dict:
    """Fit on the train split, score on both: ``{"eval_accuracy", "train_accuracy", ...}``.

    ``*_weight``: per-example weights (``Sample.weights``) of the fit and the accuracies.
    """
    model = fit_logistic_regression(train_x, train_y, seed, standardize, train_weight)
    flat = np.asarray(eval_x).reshape(len(eval_x), -1)
    train_flat = np.asarray(train_x).reshape(len(train_x), -1)
    return {
        "eval_accuracy": float(model.score(flat, eval_y, sample_weight=eval_weight)),
        "train_accuracy": float(model.score(train_flat, train_y, sample_weight=train_weight)),
        "train_examples": int(len(train_y)),
        "eval_examples": int(len(eval_y)),
        "features": int(flat.shape[1]),
        "model": model,
    }


def probe_head_weights(
    model, num_classes: int, train_x: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A Dense softmax layer's ``(kernel, bias)`` equal to a fitted ``fit_logistic_regression``.

    ``softmax(((f - mean) / scale) @ coef.T + intercept)`` = ``softmax(f @ kernel + bias)`` with
    ``kernel = coef.T / scale[:, None]`` and ``bias = intercept - (mean / scale) @ coef.T``.

    With ``train_x``, the logits are also tempered: if their standard deviation across
    classes, averaged over ``train_x``, exceeds ``MAX_LOGIT_STD``, kernel and bias are scaled
    down to it. Same predictions (argmax), softer probabilities: a logistic regression on
    separable features grows its logits without bound, and an overconfident head makes every
    example fine-tuning gets wrong a large loss and a large gradient into the backbone.

    A class the training split lacks (a span without it) gets a zero kernel column and the
    bias ``ABSENT_CLASS_BIAS``: the regression has no evidence for it, so the head starts out
    never predicting it, as its own fit would drive that logit to minus infinity.

    Raises:
        ValueError: the regression saw a label outside ``0..num_classes-1``.
    """
    scaler, regression = model[0], model[-1]
    classes = [int(c) for c in regression.classes_]
    if not set(classes) <= set(range(num_classes)):
        raise ValueError(
            f"Expected training labels in 0..{num_classes - 1} to initialize the head from the "
            f"linear probe. Received: classes={classes}"
        )
    fitted_coef = regression.coef_
    fitted_intercept = regression.intercept_
    if fitted_coef.shape[0] == 1:  # binary: sklearn keeps one row; softmax needs both logits
        fitted_coef = np.concatenate([-fitted_coef / 2, fitted_coef / 2])
        fitted_intercept = np.array([-fitted_intercept[0] / 2, fitted_intercept[0] / 2])
    coef = np.zeros((num_classes, fitted_coef.shape[1]))
    intercept = np.full(num_classes, ABSENT_CLASS_BIAS)
    coef[classes], intercept[classes] = fitted_coef, fitted_intercept
    dim = coef.shape[1]
    scale = scaler.scale_ if scaler.scale_ is not None else np.ones(dim)
    mean = scaler.mean_ if scaler.mean_ is not None else np.zeros(dim)
    kernel = coef.T / scale[:, None]
    bias = intercept - (mean / scale) @ coef.T
    if train_x is not None:
        logits = np.asarray(train_x, "float64").reshape(len(train_x), -1) @ kernel + bias
        spread = float(np.mean(np.std(logits, axis=1)))
        if spread > MAX_LOGIT_STD:
            kernel, bias = kernel * (MAX_LOGIT_STD / spread), bias * (MAX_LOGIT_STD / spread)
    return kernel.astype("float32"), bias.astype("float32")


def _entry(result: dict, train: Sample, eval_: Sample, **extra) -> dict:
    entry = {k: v for k, v in result.items() if k != "model"}
    entry["train_split_examples"] = train.split_size
    entry["eval_split_examples"] = eval_.split_size
    return {**entry, **extra}


def run_baselines(
    base: keras.Model,
    train: Sample,
    eval_: Sample,
    image_size: tuple[int, int],
    preprocessing: str | dict,
    pixel_size: tuple[int, int] = (32, 32),
    seed: int = 0,
    pooling: str = "avg",
    backbone_output: str | int | None = None,
) -> dict:
    """Both baselines on the same samples; ``"probe_model"`` is the fitted probe (not JSON),
    ``"probe_train_features"`` the features it was fitted on (for ``probe_head_weights``).

    ``pooling`` and ``backbone_output`` are the Trainer's: the probe sees what the head sees.
    """
    features = dict(
        image_size=image_size,
        preprocessing=preprocessing,
        pixel_size=pixel_size,
        pooling=pooling,
        backbone_output=backbone_output,
    )
    train_pixels, train_f = sample_features(base, train, **features)
    eval_pixels, eval_f = sample_features(base, eval_, **features)
    weights = dict(train_weight=train.weights(), eval_weight=eval_.weights())
    pixels = logistic_regression(
        train_pixels, train.labels, eval_pixels, eval_.labels, seed, False, **weights
    )
    probe = logistic_regression(train_f, train.labels, eval_f, eval_.labels, seed, **weights)
    return {
        PIXELS: _entry(pixels, train, eval_, image_size=list(pixel_size)),
        PROBE: _entry(probe, train, eval_),
        "probe_model": probe["model"],
        "probe_train_features": train_f,
    }


def init_head_from_probe(
    head: keras.layers.Dense, probe_model, num_classes: int, train_x: np.ndarray | None = None
) -> None:
    """Set ``head``'s kernel and bias to the fitted linear probe (see ``probe_head_weights``)."""
    kernel, bias = probe_head_weights(probe_model, num_classes, train_x)
    if tuple(head.kernel.shape) != kernel.shape:
        raise ValueError(
            f"Expected a head kernel of shape {kernel.shape} (pooled features x classes). "
            f"Received: {tuple(head.kernel.shape)}"
        )
    head.kernel.assign(kernel)
    head.bias.assign(bias)


def summary_entry(baselines: dict) -> dict:
    """The JSON part of ``run_baselines``' result (drops the fitted probe and features)."""
    return {PIXELS: baselines[PIXELS], PROBE: baselines[PROBE]}

"""What fine-tuning must beat, measured on the run's own train/eval split.

Two scikit-learn logistic regressions (multinomial, L2, ``C=1``):

* **pixels**: on the flattened images as the model sees them (after ``preprocess_input``, for
  MobileNetV2 the raw pixels scaled to [-1, 1]), not standardized: standardizing amplifies
  near-constant border pixels and cost this baseline ~3 points on the demo split;
* **linear probe**: on the frozen backbone's features pooled as the head pools them, standardized
  (feature scales differ by orders of magnitude), i.e. what the pre-trained features give
  without any fine-tuning.

The probe also initializes the classifier's head (``probe_head_weights``): fine-tuning then
starts from the probe's accuracy instead of from chance (head-only warm-up in closed form).

>>> result = logistic_regression(train_x, train_y, eval_x, eval_y)
>>> result["eval_accuracy"], result["train_accuracy"]
"""

from __future__ import annotations

import keras
import numpy as np

from backbone_regularizer.pipeline.trainer import head as trainer_head

PIXELS = "pixels_logistic_regression"
PROBE = "linear_probe"
# The head's starting bias for a class without training examples: exp(-30) ~ 1e-13.
ABSENT_CLASS_BIAS = -30.0


def arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    """All ``(images, labels)`` of a finite, un-augmented dataset as two numpy arrays."""
    xs, ys = [], []
    for x, y in dataset:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    if not xs:
        raise ValueError("Expected a dataset with at least one batch. Received: an empty dataset")
    return np.concatenate(xs), np.concatenate(ys).astype("int64")


def pooled_features(
    base: keras.Model,
    images: np.ndarray,
    pooling: str = "avg",
    backbone_output: str | int | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """What the Trainer's head sees of ``images``: [n, features].

    The backbone's output is chosen and pooled by ``trainer_head.pooled_features``, the same
    function the head uses (feature maps, token sequences, dict outputs), so the probe's
    weights fit the head exactly.
    """
    inputs = keras.Input(images.shape[1:])
    features = trainer_head.pooled_features(base(inputs), pooling, backbone_output)
    extractor = keras.Model(inputs, features)
    return np.asarray(extractor.predict(images, batch_size=batch_size, verbose=0), "float64")


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, seed: int = 0, standardize=True):
    """(Standardize, then) multinomial logistic regression; returns the fitted sklearn pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype="float64").reshape(len(x), -1)
    # with_mean/with_std False: an identity step, so the pipeline's shape is the same.
    scaler = StandardScaler(with_mean=standardize, with_std=standardize)
    model = make_pipeline(scaler, LogisticRegression(max_iter=5000, random_state=seed))
    return model.fit(x, y)


def logistic_regression(
    train_x: np.ndarray,
    train_y: np.ndarray,
    eval_x: np.ndarray,
    eval_y: np.ndarray,
    seed: int = 0,
    standardize: bool = True,
) -> dict:
    """Fit on the train split, score on both: ``{"eval_accuracy", "train_accuracy", ...}``."""
    model = fit_logistic_regression(train_x, train_y, seed, standardize)
    flat = np.asarray(eval_x, dtype="float64").reshape(len(eval_x), -1)
    train_flat = np.asarray(train_x, dtype="float64").reshape(len(train_x), -1)
    return {
        "eval_accuracy": float(model.score(flat, eval_y)),
        "train_accuracy": float(model.score(train_flat, train_y)),
        "train_examples": int(len(train_y)),
        "eval_examples": int(len(eval_y)),
        "features": int(flat.shape[1]),
        "model": model,
    }


def probe_head_weights(model, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A Dense softmax layer's ``(kernel, bias)`` equal to a fitted ``fit_logistic_regression``.

    ``softmax(((f - mean) / scale) @ coef.T + intercept)`` = ``softmax(f @ kernel + bias)`` with
    ``kernel = coef.T / scale[:, None]`` and ``bias = intercept - (mean / scale) @ coef.T``.

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
    return kernel.astype("float32"), bias.astype("float32")


def run_baselines(
    base: keras.Model,
    train_ds,
    eval_ds,
    seed: int = 0,
    pooling: str = "avg",
    backbone_output: str | int | None = None,
) -> dict:
    """Both baselines on the same split; ``"probe_model"`` is the fitted probe (not JSON).

    ``pooling`` and ``backbone_output`` are the Trainer's: the probe sees what the head sees.
    """
    train_x, train_y = arrays(train_ds)
    eval_x, eval_y = arrays(eval_ds)
    pixels = logistic_regression(train_x, train_y, eval_x, eval_y, seed, standardize=False)
    train_f = pooled_features(base, train_x, pooling, backbone_output)
    eval_f = pooled_features(base, eval_x, pooling, backbone_output)
    probe = logistic_regression(train_f, train_y, eval_f, eval_y, seed)
    return {
        PIXELS: {k: v for k, v in pixels.items() if k != "model"},
        PROBE: {k: v for k, v in probe.items() if k != "model"},
        "probe_model": probe["model"],
    }


def init_head_from_probe(head: keras.layers.Dense, probe_model, num_classes: int) -> None:
    """Set ``head``'s kernel and bias to the fitted linear probe (see ``probe_head_weights``)."""
    kernel, bias = probe_head_weights(probe_model, num_classes)
    if tuple(head.kernel.shape) != kernel.shape:
        raise ValueError(
            f"Expected a head kernel of shape {kernel.shape} (pooled features x classes). "
            f"Received: {tuple(head.kernel.shape)}"
        )
    head.kernel.assign(kernel)
    head.bias.assign(bias)


def summary_entry(baselines: dict) -> dict:
    """The JSON part of ``run_baselines``' result (drops the fitted probe)."""
    return {PIXELS: baselines[PIXELS], PROBE: baselines[PROBE]}

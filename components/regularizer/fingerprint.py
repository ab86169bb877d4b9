"""Fingerprints of a model: a weights checksum and predictions on a seeded probe batch."""

from __future__ import annotations

import hashlib

import keras
import numpy as np

from components.regularizer.slots import weight_paths

# Spatial or sequence dimensions left open (None) by the model are probed at this size.
_OPEN_DIM = 32


def weights_sha256(model: keras.Model) -> str:
    """SHA-256 over every variable's path, dtype, shape and raw bytes, in walk order.

    Paths come from layer names (kept by the ``.keras`` format), so the digest is identical
    for a model in memory and the same model saved and reloaded.
    """
    digest = hashlib.sha256()
    for path, variable in weight_paths(model):
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value))
        digest.update(f"{path}|{value.dtype.str}|{value.shape}\n".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def probe_batch(model: keras.Model, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """A deterministic random batch for each model input (floats in [0, 1), ints in {0, 1}).

    Raises:
        ValueError: if the model has no symbolic inputs (an unbuilt subclassed model).
    """
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            "Expected a model with defined inputs (Functional or built Sequential) to probe "
            f"its predictions. Received: {type(model).__name__} {model.name!r} without inputs."
        )
    rng = np.random.default_rng(seed)
    batch = []
    for tensor in inputs:
        shape = (batch_size,) + tuple(_OPEN_DIM if d is None else d for d in tensor.shape[1:])
        dtype = np.dtype(keras.backend.standardize_dtype(tensor.dtype))
        if np.issubdtype(dtype, np.integer):
            batch.append(rng.integers(0, 2, size=shape).astype(dtype))
        else:
            batch.append(rng.random(shape).astype(dtype))
    return batch


def predict_probe(model: keras.Model, batch: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs of ``model`` on ``batch`` in inference mode, as numpy arrays."""
    outputs = model(batch if len(batch) > 1 else batch[0], training=False)
    return [np.asarray(keras.ops.convert_to_numpy(out)) for out in keras.tree.flatten(outputs)]


def arrays_sha256(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}|{array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()

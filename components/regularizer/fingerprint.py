"""A model's predictions on a seeded probe batch, and their checksum.

(The weights checksum is ``keras_file.weights_sha256``.)"""

from __future__ import annotations

import hashlib

import keras
import numpy as np

# Dimensions left open (None) by the model are probed at this size: spatial ones of float-only
# models (images), sequence ones when an input is integer (token ids).
_OPEN_DIM = 32
_SEQUENCE_DIM = 8


def probe_batch(model: keras.Model, batch_size: int, seed: int = 0):
    """A deterministic random batch in the model's own input structure (array, list or dict).

    Each input gets values valid for it, decided from the model, not from its architecture:
    floats in [0, 1); bool inputs and integer inputs named ``*mask*`` all ones; integer inputs
    that feed an embedding (a layer with ``input_dim`` or ``vocabulary_size``, else the model's
    ``vocabulary_size``, else the smallest embedding of the model) ids in [0, vocabulary);
    other integer inputs (e.g. ids of a layer we cannot see) zeros. Open dimensions are 32 for
    float-only models (images) and 8 when an input is integer (sequences), never more than the
    model's ``max_sequence_length``.

    Raises:
        ValueError: if the model has no symbolic inputs (an unbuilt subclassed model).
    """
    inputs = getattr(model, "inputs", None) or _inputs_from_build_config(model)
    if not inputs:
        raise ValueError(
            "Expected a model with defined inputs (Functional, built Sequential, or a subclassed "
            "model built from an input shape) to probe its predictions. "
            f"Received: {type(model).__name__} {model.name!r} without inputs."
        )
    structure = getattr(model, "_inputs_struct", None)
    if structure is None or len(keras.tree.flatten(structure)) != len(inputs):
        structure = inputs if len(inputs) > 1 else inputs[0]
    names = _input_names(structure)
    dtypes = [np.dtype(keras.backend.standardize_dtype(t.dtype)) for t in inputs]
    sequences = any(not np.issubdtype(d, np.floating) for d in dtypes)
    open_dim = _SEQUENCE_DIM if sequences else _OPEN_DIM
    max_length = getattr(model, "max_sequence_length", None)
    if isinstance(max_length, int) and max_length > 0:
        open_dim = min(open_dim, max_length)
    vocabularies = _vocabularies(model, inputs)
    rng = np.random.default_rng(seed)
    batch = []
    for tensor, name, dtype, vocabulary in zip(inputs, names, dtypes, vocabularies, strict=True):
        shape = (batch_size,) + tuple(open_dim if d is None else d for d in tensor.shape[1:])
        if dtype == np.bool_ or (np.issubdtype(dtype, np.integer) and "mask" in name.lower()):
            batch.append(np.ones(shape, dtype))
        elif np.issubdtype(dtype, np.integer):
            if vocabulary:
                batch.append(rng.integers(0, vocabulary, size=shape).astype(dtype))
            else:
                batch.append(np.zeros(shape, dtype))
        else:
            batch.append(rng.random(shape).astype(dtype))
    return keras.tree.pack_sequence_as(structure, batch)


def _inputs_from_build_config(model: keras.Model) -> list:
    """Symbolic inputs of a subclassed model from the shape it was built with (``.keras`` keeps
    it as ``build_config``); float inputs of the model's dtype, since nothing says otherwise."""
    try:
        config = model.get_build_config() or {}
    except (AttributeError, NotImplementedError, ValueError):
        return []
    shapes = (
        [config["input_shape"]]
        if "input_shape" in config
        else list((config.get("shapes_dict") or {}).values())
    )
    if len(shapes) != 1 or not isinstance(shapes[0], (list, tuple)):
        return []  # several call arguments: their structure is unknown
    shape = tuple(shapes[0])
    return [keras.KerasTensor(shape, dtype=model.input_dtype or "float32", name="input")]


def _input_names(structure) -> list[str]:
    """The name of each flat input: its dict key when the model takes a dict."""
    if isinstance(structure, dict):
        return [str(k) for k in sorted(structure)]  # keras.tree flattens dicts by sorted key
    return [getattr(t, "name", "") or "" for t in keras.tree.flatten(structure)]


def _embedding_size(layer) -> int | None:
    for attribute in ("input_dim", "vocabulary_size"):
        value = getattr(layer, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _vocabularies(model: keras.Model, inputs: list) -> list[int | None]:
    """For each integer input, the number of valid ids (None: it feeds no embedding we see)."""
    consumers: dict[int, list] = {id(t): [] for t in inputs}
    for layer in getattr(model, "operations", None) or model.layers:
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in getattr(node.arguments, "keras_tensors", []):
                if id(tensor) in consumers:
                    consumers[id(tensor)].append(layer)
    model_size = _embedding_size(model)
    smallest = min(
        (
            size
            for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.Embedding) and (size := _embedding_size(layer))
        ),
        default=None,
    )
    out = []
    for tensor in inputs:
        sizes = [s for layer in consumers[id(tensor)] if (s := _embedding_size(layer))]
        if sizes:
            out.append(min(sizes))
        elif "token" in (tensor.name or "").lower() or not consumers[id(tensor)]:
            out.append(model_size or smallest)
        else:
            out.append(None)
    return out


def predict_probe(model: keras.Model, batch) -> list[np.ndarray]:
    """Outputs of ``model`` on ``batch`` in inference mode, as flat numpy arrays."""
    outputs = model(batch, training=False)
    return [np.asarray(keras.ops.convert_to_numpy(out)) for out in keras.tree.flatten(outputs)]


def arrays_sha256(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}|{array.shape}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()

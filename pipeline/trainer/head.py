"""From whatever a backbone outputs to one feature vector per image, for the classifier head.

The rule looks at the backbone's output structure and ranks, never at its class or names:

- a **4-D feature map** ``(batch, h, w, c)`` (CNNs: keras.applications, KerasHub ResNet,
  DenseNet, EfficientNet): global pooling over ``h, w``, ``"avg"`` (default) or ``"max"``;
- a **token sequence** ``(batch, tokens, dim)`` (ViT, DeiT, DINOv2): the mean over tokens
  (``"avg"``, default: valid whether or not the model has class or register tokens),
  ``"max"``, or ``"class_token"`` (the first token, for models trained to summarize the image
  there: ViT with ``use_class_token``);
- a **vector** ``(batch, dim)``: used as is (a backbone built with ``pooling="avg"``);
- a **dict, list or tuple** of tensors: one entry is chosen, then treated as above. With
  ``backbone_output`` set, that key (or index). Otherwise: the one vector if exactly one
  entry is rank 2 (a pooled summary the backbone provides, e.g. BERT's ``pooled_output``),
  else the rank 3/4 entry with the fewest positions (the deepest level of a feature
  pyramid: every level downsamples), ties going to the most channels. Anything still
  ambiguous is an error asking for ``backbone_output``.

Only built-in Keras layers and ops are used, so the classifier saves and loads with
``safe_mode=True`` (no Lambda layers).

>>> features = pooled_features(backbone(inputs), pooling="avg")
"""

from __future__ import annotations

import math

import keras

POOLING = ("avg", "max", "class_token")


def _rank(tensor) -> int:
    return len(tensor.shape)


def _positions(tensor) -> float:
    dims = tensor.shape[1:-1]
    return math.inf if any(d is None for d in dims) else math.prod(dims)


def _shape(value) -> str:
    shape = getattr(value, "shape", None)
    return str(tuple(shape)) if shape is not None else type(value).__name__


def _describe(outputs) -> str:
    if isinstance(outputs, dict):
        return "{" + ", ".join(f"{k!r}: {_shape(v)}" for k, v in outputs.items()) + "}"
    return "[" + ", ".join(_shape(v) for v in outputs) + "]"


def select_output(outputs, backbone_output: str | int | None = None):
    """The one tensor of a backbone's outputs the head is built on (see the module rule).

    Raises:
        ValueError: ``backbone_output`` names no entry, the backbone outputs nested
            structures, or no single entry can be chosen by rank.
    """
    if not isinstance(outputs, (dict, list, tuple)):
        if backbone_output is not None:
            raise ValueError(
                "Invalid trainer setting `backbone_output`. Expected null: the backbone has "
                f"a single output of shape {_shape(outputs)}. "
                f"Received: backbone_output={backbone_output!r}"
            )
        return outputs
    entries = dict(outputs) if isinstance(outputs, dict) else dict(enumerate(outputs))
    if backbone_output is not None:
        key = backbone_output
        if not isinstance(outputs, dict) and isinstance(key, str) and key.isdigit():
            key = int(key)
        if key not in entries:
            raise ValueError(
                "Invalid trainer setting `backbone_output`. Expected a key (dict) or index "
                f"(list) of the backbone's outputs {_describe(outputs)}. "
                f"Received: backbone_output={backbone_output!r}"
            )
        return entries[key]

    def size(key):  # fewest positions (the deepest level of a pyramid), then most channels
        return (-_positions(entries[key]), entries[key].shape[-1] or 0)

    nested = any(isinstance(v, (dict, list, tuple)) for v in entries.values())
    candidates = [] if nested else [k for k, v in entries.items() if _rank(v) == 2]
    if not nested and not candidates:
        maps = [k for k, v in entries.items() if _rank(v) in (3, 4)]
        best = max((size(k) for k in maps), default=None)
        candidates = [k for k in maps if size(k) == best]
    if len(candidates) != 1:
        raise ValueError(
            "Cannot choose which backbone output the classification head uses: "
            f"{_describe(outputs)}. Expected exactly one vector output, or one feature map "
            "or token sequence with the fewest positions. Set the trainer setting "
            "`backbone_output` to a key (dict) or index (list). Received: backbone_output=None"
        )
    return entries[candidates[0]]


def pooled_features(outputs, pooling: str = "avg", backbone_output: str | int | None = None):
    """One vector per example from the backbone's ``outputs`` (symbolic KerasTensors).

    Raises:
        ValueError: an unknown ``pooling``, ``"class_token"`` on a feature map, an output of
            rank other than 2, 3 or 4, or an output that cannot be chosen (see
            ``select_output``).
    """
    if pooling not in POOLING:
        raise ValueError(
            f"Invalid trainer setting `pooling`. Expected one of {list(POOLING)}. "
            f"Received: pooling={pooling!r}"
        )
    features = select_output(outputs, backbone_output)
    rank = _rank(features)
    if rank == 2:
        return features
    if rank == 4:
        if pooling == "class_token":
            raise ValueError(
                "Invalid trainer setting `pooling`. Expected 'avg' or 'max' for a backbone "
                f"that outputs a feature map of shape {tuple(features.shape)}. "
                "Received: pooling='class_token'"
            )
        layer = {
            "avg": keras.layers.GlobalAveragePooling2D,
            "max": keras.layers.GlobalMaxPooling2D,
        }[pooling]
        return layer(name="head_pool")(features)
    if rank == 3:
        if pooling == "class_token":
            # A built-in slicing op (GetItem), serialized without a Lambda layer.
            return features[:, 0]
        layer = {
            "avg": keras.layers.GlobalAveragePooling1D,
            "max": keras.layers.GlobalMaxPooling1D,
        }[pooling]
        return layer(name="head_pool")(features)
    raise ValueError(
        "Expected a backbone output of rank 2 (vector), 3 (token sequence) or 4 (feature "
        f"map) for the classification head. Received: shape {tuple(features.shape)}"
    )

"""Find every regularizer slot of a built Keras model and the variable behind it.

A *slot* is a layer attribute named ``<kind>_regularizer`` that appears in the layer's config
(so it survives serialization) together with the variable whose penalty it controls. The
mapping is derived from the layer itself, not from a table of architectures:

* the variable is the layer's own variable named ``<kind>`` or ``<kind>_kernel``; Keras'
  depthwise convolutions are the one alias (``depthwise_regularizer`` -> variable ``kernel``);
* a read-only ``<kind>_regularizer`` property (LSTM/GRU/SimpleRNN) forwards to a sublayer
  (the cell), whose own slot is found when the walk reaches it;
* a layer with a config key but no variable of that kind, whose sublayers have the same slot
  (MultiHeadAttention and its EinsumDense projections), *governs* them: the sublayers are
  rebuilt from the governor's config on load, so the governor's attribute must be set too.

Everything here is plain Keras and relies on ``Layer._layers`` (through
``keras_file.iter_layers``) and ``_trainable_variables`` (keras 3.12), the only way to reach
sublayers that ``model.layers`` does not expose (RNN cells, attention projections).
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import keras

from backbone_regularizer.components.regularizer.keras_file import (
    iter_layers,
    layer_keys,
    own_variables,
)

_SUFFIX = "_regularizer"
# Regularizers on activations are not weight penalties.
_NOT_WEIGHT_SLOTS = frozenset({"activity_regularizer"})
# Variable names tried for attribute `<kind>_regularizer`, in order.
_ALIASES = {"depthwise": ("depthwise_kernel", "kernel")}


@dataclasses.dataclass(frozen=True)
class Slot:
    """One weight whose penalty is controlled by a serializable regularizer attribute."""

    path: str  # unique, readable path of the weight: layer path + "/" + variable name
    key: str  # structural key, stable across reloads (see ``keras_file.weight_paths``)
    layer: keras.layers.Layer  # the layer owning the variable
    attribute: str  # e.g. "kernel_regularizer"
    kind: str  # e.g. "kernel", "depthwise", "recurrent", "bias", "gamma"
    variable: keras.Variable
    # Layer whose config serializes this slot: the owner itself, or a governing parent.
    config_owner: keras.layers.Layer
    config_owner_path: str


@dataclasses.dataclass(frozen=True)
class Unslotted:
    """A trainable weight that no serializable regularizer attribute controls.

    Its ``kind`` is the variable's own name (``gamma`` of a LayerScale, ``class_token``,
    ``embeddings`` of a PositionEmbedding): selected like any slot of that kind, its penalty is
    carried by the regularization plan saved with the model
    (``backbone_regularizer.components.regularizer.plan``).
    """

    path: str
    key: str
    layer: keras.layers.Layer
    kind: str
    variable: keras.Variable
    reason: str


@dataclasses.dataclass(frozen=True)
class SlotMap:
    slots: list[Slot]
    unslotted: list[Unslotted]

    def by_path(self) -> dict[str, Slot | Unslotted]:
        """Every trainable-created weight of the model, slotted or not, by its path."""
        return {w.path: w for w in [*self.slots, *self.unslotted]}

    def by_key(self) -> dict[str, Slot | Unslotted]:
        """Every trainable-created weight of the model, slotted or not, by its stable key."""
        return {w.key: w for w in [*self.slots, *self.unslotted]}


def _slot_keys(layer: keras.layers.Layer, cache: dict[type, list[str]]) -> list[str]:
    """``*_regularizer`` arguments of the layer's constructor: the keys its config round-trips.

    Read from the signatures along the class hierarchy (a subclass that forwards ``**kwargs``
    inherits its parent's slots) rather than from ``get_config()``, which serializes the whole
    layer and would dominate the cost on large models.
    """
    if type(layer) in cache:
        return cache[type(layer)]
    keys: set[str] = set()
    for cls in type(layer).__mro__:
        init = vars(cls).get("__init__")
        if init is None:
            continue
        if cls is keras.layers.Layer or cls is keras.Model:
            break
        parameters = inspect.signature(init).parameters.values()
        keys.update(
            p.name
            for p in parameters
            if p.name.endswith(_SUFFIX) and p.name not in _NOT_WEIGHT_SLOTS
        )
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    cache[type(layer)] = sorted(keys)
    return cache[type(layer)]


def _is_read_only(layer: keras.layers.Layer, attribute: str) -> bool:
    descriptor = getattr(type(layer), attribute, None)
    return isinstance(descriptor, property) and descriptor.fset is None


def _find_variable(layer: keras.layers.Layer, kind: str) -> keras.Variable | None:
    by_name = {v.name: v for v in layer._trainable_variables}
    by_name.update({v.name: v for v in layer._non_trainable_variables if v.name not in by_name})
    for name in _ALIASES.get(kind, (kind, f"{kind}_kernel")):
        if name in by_name:
            return by_name[name]
    return None


def find_slots(model: keras.Model) -> SlotMap:
    """Map every trainable-created weight of ``model`` to its regularizer slot, or say why not.

    Each variable appears once, even when its layer is shared or nested several levels deep.

    Raises:
        ValueError: if the model has not been built (it has no variables to regularize).
    """
    if not model.built or not model.weights:
        raise ValueError(
            "Expected a built Keras model with weights. "
            f"Received: model={model.name!r} with built={model.built}, "
            f"{len(model.weights)} weights."
        )
    layers = list(iter_layers(model))
    keys = layer_keys(model)

    def key_of(layer, variable):
        index = next(i for i, v in enumerate(own_variables(layer)) if v is variable)
        return f"{keys[id(layer)]}[{index}]"

    parents = {path: (layer, parent) for path, layer, parent in layers}
    governors: dict[tuple[int, str], tuple[keras.layers.Layer, str]] = {}
    keys_by_type: dict[type, list[str]] = {}
    slots: list[Slot] = []
    slotted: set[int] = set()
    for path, layer, _ in layers:
        for attribute in _slot_keys(layer, keys_by_type):
            kind = attribute[: -len(_SUFFIX)]
            variable = _find_variable(layer, kind)
            if variable is None or id(variable) in slotted:
                # Forwarding properties (RNN -> cell) and governors (MHA) own no variable of
                # that kind; the sublayers that do are reached by the walk.
                continue
            governor = _governor_of(attribute, parents, path, governors, keys_by_type)
            owner, owner_path = governor or (layer, path)
            slotted.add(id(variable))
            slots.append(
                Slot(
                    path=f"{path}/{variable.name}",
                    key=key_of(layer, variable),
                    layer=layer,
                    attribute=attribute,
                    kind=kind,
                    variable=variable,
                    config_owner=owner,
                    config_owner_path=owner_path,
                )
            )
    unslotted = []
    seen: set[int] = set()
    for path, layer, _ in layers:
        names = [_stable_name(layer, v) for v in layer._trainable_variables]
        for index, variable in enumerate(layer._trainable_variables):
            if id(variable) in slotted or id(variable) in seen:
                continue
            seen.add(id(variable))
            suffix = f"#{index}" if names.count(names[index]) > 1 else ""
            unslotted.append(
                Unslotted(
                    path=f"{path}/{names[index]}{suffix}",
                    key=key_of(layer, variable),
                    layer=layer,
                    kind=names[index],
                    variable=variable,
                    reason=(
                        f"{type(layer).__name__} has no serializable regularizer attribute "
                        f"for variable {variable.name!r}"
                    ),
                )
            )
    return SlotMap(slots=slots, unslotted=unslotted)


def _stable_name(layer: keras.layers.Layer, variable: keras.Variable) -> str:
    """The variable's name, or the layer attribute holding it when Keras made the name up.

    ``add_weight`` without ``name`` gives ``variable_<global counter>``, which differs between
    processes; the attribute (``self.gamma = self.add_weight(...)``) does not.
    """
    if not re.fullmatch(r"variable(_\d+)?", variable.name):
        return variable.name
    for attribute, value in vars(layer).items():
        if value is variable and not attribute.startswith("_"):
            return attribute
    return "variable"


def _governor_of(attribute, parents, path, governors, keys_by_type):
    """Return ``(governor, path)`` when an ancestor's config rebuilds this layer's slot.

    An ancestor governs ``attribute`` when its config has the key, it owns no variable of that
    kind itself and its attribute is not a read-only forwarder (the MultiHeadAttention shape).
    """
    _, parent_path = parents[path]
    while parent_path:
        parent, grand = parents[parent_path]
        key = (id(parent), attribute)
        if isinstance(parent, keras.Model):
            governors[key] = None  # models serialize their layers' own configs
        if key not in governors:
            kind = attribute[: -len(_SUFFIX)]
            governs = (
                attribute in _slot_keys(parent, keys_by_type)
                and _find_variable(parent, kind) is None
                and not _is_read_only(parent, attribute)
            )
            governors[key] = (parent, parent_path) if governs else None
        if governors[key] is not None:
            return governors[key]
        parent_path = grand
    return None


def set_slot_attribute(layer: keras.layers.Layer, attribute: str, regularizer) -> None:
    """Set ``attribute`` where the layer's ``get_config`` reads it (public or private field)."""
    if _is_read_only(layer, attribute):
        raise ValueError(
            f"Expected a writable `{attribute}` on layer {layer.name!r}. Received: a read-only "
            f"property on {type(layer).__name__}."
        )
    if f"_{attribute}" in vars(layer) and attribute not in vars(layer):
        # MultiHeadAttention stores `_kernel_regularizer` and serializes that field.
        setattr(layer, f"_{attribute}", regularizer)
    else:
        setattr(layer, attribute, regularizer)

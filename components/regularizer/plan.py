"""The regularization plan: every penalty and freeze, keyed by weight path, kept with the model.

Why: a layer's config carries its ``kernel_regularizer`` (and ``trainable=False``) only when the
model's config is made of its layers' configs (Functional, Sequential). Many models serialize
their constructor arguments instead and rebuild every layer on load (every KerasHub
``Backbone``), some weights have no regularizer argument at all (ConvNeXt's LayerScale, a ViT
class token), and an L2-SP penalty needs its anchor ``w0``, which no config holds. Those
penalties are lost on a ``.keras`` round trip, whatever is set on the layers.

How: ``regularize`` records the plan on the model (``set_plan``). Where the layer configs cannot
carry it (``file_format.py`` decides, per file), the file's ``config.json`` is wrapped in a
registered envelope, ``RegularizedModel``: ``{"model": <the model's own config>, "plan":
{"weights": [{"key", "path", "regularizer"}, ...], "frozen_layers": [...]}}``.
``keras.saving.load_model`` (in a process that imported
``backbone_regularizer.components.regularizer``) deserializes the envelope, whose
``from_config`` builds the model from its own config, then sets each planned weight's
``variable.regularizer`` (and the layer attribute where one exists) and freezes the planned
layers before Keras loads the weights, and returns the model itself: same class, same layers,
same weights file. Without the package the file fails to load with Keras' "Could not locate
class" error rather than silently losing penalties.

L2-SP anchors are not written: each ``L2SP`` penalty is anchored, once, to its weight's value
right after Keras loaded that layer's weights, i.e. to the weights in the file, whose checksum
the regularizer recorded (the checks and the Trainer compare the two; see ``checks.py``).
"""

from __future__ import annotations

import json

import keras

from backbone_regularizer.components.regularizer.keras_file import iter_layers, layer_keys
from backbone_regularizer.components.regularizer.penalties import needs_anchor
from backbone_regularizer.components.regularizer.slots import (
    Slot,
    find_slots,
    set_slot_attribute,
)

PACKAGE = "backbone_regularizer"
_PLAN_ATTR = "_backbone_regularizer_plan"
_CARRIED_ATTR = "_backbone_regularizer_carried"
_FROZEN_ATTR = "_backbone_regularizer_frozen"
PLAN_FORMAT = 1
LAYER_CONFIG, PLAN = "layer config", "plan"


def get_plan(model: keras.Model) -> dict[str, dict]:
    """``{weight key: serialized regularizer}`` carried by ``model`` (empty when none).

    Keys are structural (``slots.weight_paths``), not names: a model that rebuilds its layers
    on load may give them new auto-generated names.
    """
    return dict(vars(model).get(_PLAN_ATTR) or {})


def get_frozen(model: keras.Model) -> list[str]:
    """Keys of the layers the freeze policy set to ``trainable=False`` (saved with the plan)."""
    return list(vars(model).get(_FROZEN_ATTR) or [])


def set_plan(model: keras.Model, plan: dict[str, dict], frozen: list[str] | None = None) -> None:
    # object.__setattr__: plain attributes, not tracked by Keras (no weight, no sublayer).
    object.__setattr__(model, _PLAN_ATTR, dict(plan))
    if frozen is not None:
        object.__setattr__(model, _FROZEN_ATTR, list(frozen))


def carried_by(model: keras.Model) -> dict[str, str]:
    """For a model restored by ``load_model``: how each planned penalty reached it, by key.

    ``"layer config"``: the layer's own config already rebuilt it (the plan only confirmed it);
    ``"plan"``: only the plan restored it (or it is an L2-SP penalty, whose anchor only the
    plan restores). Empty for a model that was not loaded from a plan.
    """
    return dict(vars(model).get(_CARRIED_ATTR) or {})


def attach(weight: Slot | object, regularizer) -> None:
    """Make ``regularizer`` live on the weight's variable and, where it has one, its slot."""
    weight.variable.regularizer = regularizer
    if isinstance(weight, Slot):
        # The owner's attribute documents the weight; a governor's is what gets serialized.
        for layer in {id(x): x for x in (weight.layer, weight.config_owner)}.values():
            set_slot_attribute(layer, weight.attribute, regularizer)


def apply_plan(model: keras.Model, plan: dict[str, dict], frozen: list[str] = ()) -> dict[str, str]:
    """Give every weight keyed in ``plan`` its penalty, freeze the ``frozen`` layer keys
    (a model that rebuilds its layers on load forgets ``trainable=False`` too); return how
    each penalty was carried.

    L2-SP penalties are anchored when Keras next loads the owning layer's weights (the
    ``load_model`` case); ``regularize`` anchors in-memory models itself.

    Raises:
        ValueError: the plan names a weight or layer key the model does not have.
    """
    keys = layer_keys(model)
    layers = {keys[id(layer)]: layer for _, layer, _ in iter_layers(model)}
    unknown = sorted(set(frozen) - set(layers))
    if unknown:
        raise ValueError(
            "Expected every frozen layer of the regularization plan in the loaded model. "
            f"Received: {len(unknown)} unknown layer keys, e.g. {unknown[:3]}"
        )
    for key in frozen:
        layers[key].trainable = False
    weights = find_slots(model).by_key()
    missing = sorted(set(plan) - set(weights))
    if missing:
        raise ValueError(
            "Expected every weight of the regularization plan in the loaded model. Received: "
            f"{len(missing)} unknown weight keys, e.g. {missing[:3]}"
        )
    carried: dict[str, str] = {}
    shared: dict[str, keras.regularizers.Regularizer] = {}
    to_anchor: dict[int, tuple[keras.layers.Layer, list]] = {}
    for key, config in plan.items():
        weight = weights[key]
        current = weight.variable.regularizer
        signature = json.dumps(config, sort_keys=True)
        if signature not in shared or needs_anchor(shared[signature]):
            shared[signature] = keras.regularizers.deserialize(config)  # one L2SP per weight
        regularizer = shared[signature]
        same = current is not None and _same(keras.regularizers.serialize(current), config)
        if same and not needs_anchor(regularizer):
            carried[key] = LAYER_CONFIG
            regularizer = current
        else:
            carried[key] = PLAN
        attach(weight, regularizer)
        if needs_anchor(regularizer):
            layer = weight.layer
            to_anchor.setdefault(id(layer), (layer, []))[1].append((weight.variable, regularizer))
    for layer, pairs in to_anchor.values():
        _anchor_after_next_load(layer, pairs)
    set_plan(model, plan, list(frozen))
    object.__setattr__(model, _CARRIED_ATTR, carried)
    return carried


def _same(serialized, config: dict) -> bool:
    return (
        isinstance(serialized, dict)
        and serialized.get("class_name") == config.get("class_name")
        and serialized.get("config") == config.get("config")
    )


def _anchor_after_next_load(layer: keras.layers.Layer, pairs: list) -> None:
    """Anchor each L2-SP penalty to its weight right after Keras loads this layer's weights.

    One shot: the instance-level wrapper removes itself, so a later ``load_weights`` (e.g. a
    checkpoint restored during training) never moves the anchor.
    """
    original = layer.load_own_variables

    def load_own_variables(store):
        original(store)
        vars(layer).pop("load_own_variables", None)
        for variable, regularizer in pairs:
            regularizer.anchor_to(variable.value)

    object.__setattr__(layer, "load_own_variables", load_own_variables)


@keras.saving.register_keras_serializable(package=PACKAGE, name="RegularizedModel")
class RegularizedModel:
    """Serialization envelope only: ``from_config`` returns the wrapped model itself."""

    def get_config(self) -> dict:  # never instantiated; Keras requires the method to register
        raise NotImplementedError("RegularizedModel is written by save_regularized only")

    @classmethod
    def from_config(cls, config: dict) -> keras.Model:
        # Runs inside Keras' deserialization scope: safe_mode and custom objects apply.
        model = keras.saving.deserialize_keras_object(config["model"])
        plan = config.get("plan") or {}
        if plan.get("format") != PLAN_FORMAT:
            raise ValueError(
                f"Expected a regularization plan of format {PLAN_FORMAT}. "
                f"Received: format={plan.get('format')!r}"
            )
        apply_plan(
            model,
            {w["key"]: w["regularizer"] for w in plan["weights"]},
            plan.get("frozen_layers", []),
        )
        return model


def wrap_config(model: keras.Model, config: dict) -> dict:
    """``config`` (the model's serialized ``config.json``) inside the plan envelope, or
    unchanged when ``model`` carries no plan."""
    plan = get_plan(model)
    if not plan:
        return config
    paths = {w.key: w.path for w in find_slots(model).by_key().values()}  # for human readers
    config = dict(config)
    compile_config = config.pop("compile_config", None)
    return {
        "module": __name__,
        "class_name": "RegularizedModel",
        "registered_name": f"{PACKAGE}>RegularizedModel",
        "config": {
            "model": config,
            "plan": {
                "format": PLAN_FORMAT,
                "weights": [
                    {"key": k, "path": paths.get(k), "regularizer": r} for k, r in plan.items()
                ],
                "frozen_layers": get_frozen(model),
            },
        },
        "compile_config": compile_config,
    }

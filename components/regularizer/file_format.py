"""How a regularized model is written: a plain ``.keras`` file, or inside the plan envelope.

``file_format`` decides per model from what its layer configs can carry (see ``plan.py`` for
the plan and its envelope):

* ``"keras"``: every planned penalty is on a weight with a regularizer attribute whose layer
  config is part of the model's config, and is not L2-SP; every frozen layer's config is part
  of it too. The file is the one ``model.save`` writes: ``keras.saving.load_model`` restores
  every penalty and freeze in any process, without this package (a custom regularizer needs
  only the module that registers it);
* ``"regularized-envelope"``: otherwise (KerasHub backbones and other models whose config is
  their constructor arguments, weights without a regularizer attribute, L2-SP anchors).

The decision and its reasons go into the report (``"file": {"format", "why"}``);
``regularize_file`` checks it on the written file, reloaded, and falls back to the envelope
(``wrap_file``) when a plain file did not give back what its layer configs were expected to.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras

# keras.src: the class every Functional model is, and Keras' own test of whether its config is
# its layers' configs (a subclass with another constructor serializes its arguments instead).
from keras.src.models.functional import Functional, functional_like_constructor

from backbone_regularizer.components.regularizer.keras_file import (
    iter_layers,
    layer_keys,
    read_config,
    replace_config,
)
from backbone_regularizer.components.regularizer.penalties import needs_anchor
from backbone_regularizer.components.regularizer.plan import get_frozen, get_plan, wrap_config
from backbone_regularizer.components.regularizer.slots import Slot, find_slots

KERAS_FILE, ENVELOPE_FILE = "keras", "regularized-envelope"


@dataclasses.dataclass(frozen=True)
class FileFormat:
    """How a regularized model is written: ``"keras"`` (plain) or ``"regularized-envelope"``,
    and why (recorded in the report as ``"file": {"format", "why"}``)."""

    name: str
    why: tuple[str, ...]

    @property
    def envelope(self) -> bool:
        return self.name == ENVELOPE_FILE

    def to_dict(self) -> dict:
        return {"format": self.name, "why": list(self.why)}


def _serializes_layer_configs(layer: keras.layers.Layer) -> bool:
    """Whether ``layer``'s config holds its sublayers' own configs (so they carry their
    regularizer arguments and ``trainable`` flags through a save).

    Models: Functional and Sequential do, unless a subclass changes the constructor or
    ``get_config`` (a KerasHub ``Backbone`` serializes its constructor arguments; a subclassed
    model builds its layers in ``__init__``). Other layers with sublayers (RNN, Bidirectional,
    MultiHeadAttention as a governor, see ``slots.py``) are taken to; ``regularize_file`` checks
    the written file and falls back to the envelope when one does not.
    """
    if not isinstance(layer, keras.Model):
        return True
    cls = type(layer)
    if isinstance(layer, keras.Sequential):
        return cls.get_config is keras.Sequential.get_config
    return (
        isinstance(layer, Functional)
        and functional_like_constructor(cls)
        and cls.get_config is Functional.get_config
    )


def _rebuilder(path: str, parents: dict) -> keras.Model | None:
    """The outermost model above the layer at ``path`` whose config does not hold its layers'
    configs (loading rebuilds the layer from constructor arguments), or None."""
    found = None
    parent = parents[path][1]
    while parent:
        layer, parent_of_parent = parents[parent]
        if not _serializes_layer_configs(layer):
            found = layer
        parent = parent_of_parent
    return found


def file_format(model: keras.Model) -> FileFormat:
    """Decide from the model's plan and what its layer configs carry how to write it.

    Plain Keras when the layer configs carry every planned penalty and frozen flag (see the
    module docstring); the envelope, with each reason, otherwise.
    """
    plan, frozen = get_plan(model), get_frozen(model)
    if not plan and not frozen:
        return FileFormat(KERAS_FILE, ("no regularization plan: nothing to carry",))
    weights = find_slots(model).by_key()
    parents = {path: (layer, parent) for path, layer, parent in iter_layers(model)}
    keys = layer_keys(model)
    paths = {keys[id(layer)]: path for path, (layer, _) in parents.items()}
    anchored, unslotted, rebuilt = [], [], {}
    for key in plan:
        weight = weights[key]
        if needs_anchor(weight.variable.regularizer):
            anchored.append(weight.path)
        elif not isinstance(weight, Slot):
            unslotted.append(weight.path)
        elif rebuilder := _rebuilder(weight.config_owner_path, parents):
            rebuilt.setdefault(id(rebuilder), [rebuilder, [], []])[1].append(weight.path)
    for key in frozen:
        if rebuilder := _rebuilder(paths[key], parents):
            rebuilt.setdefault(id(rebuilder), [rebuilder, [], []])[2].append(paths[key])
    why = []
    if anchored:
        why.append(
            f"{len(anchored)} L2-SP penalties (e.g. {anchored[0]!r}): L2SP is this package's "
            "class and only the plan restores each anchor w0 from the loaded weights"
        )
    if unslotted:
        why.append(
            f"{len(unslotted)} weights without a regularizer attribute (e.g. {unslotted[0]!r}): "
            "no layer config can carry their penalty, only the plan"
        )
    for layer, penalties, frozen_paths in rebuilt.values():
        lost = _counted((len(penalties), "penalties"), (len(frozen_paths), "frozen flags"))
        why.append(
            f"{type(layer).__name__} {layer.name!r} serializes its constructor arguments, not "
            f"its layers' configs: loading rebuilds its layers without {lost}, which only the "
            "plan restores"
        )
    if why:
        return FileFormat(ENVELOPE_FILE, tuple(why))
    return FileFormat(KERAS_FILE, _plain_reasons(plan, len(frozen)))


def _plain_reasons(plan: dict[str, dict], frozen: int) -> tuple[str, ...]:
    regularizers = sorted({c["class_name"] for c in plan.values()})
    carried = _counted(
        (len(plan), f"penalties ({', '.join(regularizers)})"),
        (frozen, "trainable=False flags of frozen layers"),
    )
    why = [
        f"the layer configs carry all {carried}: keras.saving.load_model restores them "
        "without this package"
    ]
    custom = sorted(
        {
            (c["class_name"], c.get("module"))
            for c in plan.values()
            if not str(c.get("module") or "").startswith("keras")
        },
        key=str,
    )
    why += [
        f"custom regularizer {name} is registered by module {module!r}: import it before "
        "loading (as for any custom class)"
        for name, module in custom
    ]
    return tuple(why)


def _counted(*items: tuple[int, str]) -> str:
    """``"8 penalties and 6 frozen flags"``, leaving out what counts 0."""
    return " and ".join(f"{n} {what}" for n, what in items if n) or "nothing"


def wrap_file(model: keras.Model, path: str | os.PathLike, why: tuple[str, ...]) -> FileFormat:
    """Rewrite the plain ``.keras`` file of ``model`` at ``path`` inside the plan envelope."""
    replace_config(path, wrap_config(model, read_config(path)))
    return FileFormat(ENVELOPE_FILE, why)


def save_regularized(model: keras.Model, path: str | os.PathLike) -> FileFormat:
    """``model.save(path)``, inside the plan envelope when the layer configs cannot carry the
    model's plan (``file_format``); returns the format written and why.

    Use it to re-save a regularized model: a plain ``model.save`` keeps only the penalties the
    layer configs carry. (``regularize_file`` writes the same file with the weights copied
    from its source file: see ``archive.py``.)
    """
    path = Path(path)
    model.save(path)
    written = file_format(model)
    if written.envelope:
        wrap_file(model, path, written.why)
    return written

"""Import the Python modules that register a model's custom classes, before loading it.

Keras deserializes a class from a ``.keras`` file only if it is registered in the loading
process (``keras.saving.register_keras_serializable``); registration happens when the module
defining the class is imported. ``safe_mode`` stays on: importing a module the user names is
the user's explicit trust decision, and Lambda layers are still refused.

Two sources of modules, used by the CLI (``--import``), the ``BackboneRegularizer`` executor
(``custom_modules``) and the Trainer (``custom_modules`` in ``custom_config``) alike:

1. the modules the user names, imported in order; one that fails to import is an error;
2. modules recorded in the file itself: every serialized object in a ``.keras`` archive's
   ``config.json`` carries a ``"module"`` field. Those are imported automatically only when
   they are trusted: ``keras_hub`` (a file holding any ``keras_hub`` class imports the
   ``keras_hub`` package, which registers all of its classes), or a module the user named or
   one of its submodules. Any other recorded module is left alone: Keras then fails to
   deserialize its class with an error naming it, and the user decides whether to import it.

>>> import_modules(["my_project.layers"])            # the user's own registered layers
('my_project.layers',)
>>> import_for_model(read_config("bert.keras"))      # imports keras_hub if the file needs it
('keras_hub',)
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from backbone_regularizer.components.extras import EXTRA_OF, install_hint

# Recorded modules under these top-level packages are imported without being named. keras
# itself registers its classes on import, so it never needs to be listed.
TRUSTED_PACKAGES = ("keras_hub",)
_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def check_module_names(custom_modules: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalize ``custom_modules`` to a tuple of dotted module names, first occurrence kept.

    Accepts ``None`` (no modules), one name, a list/tuple of names, or the JSON of a list
    (how exec properties carry it). Nothing is imported.

    Raises:
        ValueError: anything that is not a dotted Python module name.
    """
    value: Any = custom_modules
    if value is None:
        return ()
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(name, str) and _MODULE_NAME.match(name) for name in value
    ):
        raise ValueError(
            "Invalid value for argument `custom_modules`. Expected a list of dotted Python "
            "module names, e.g. ['my_project.layers']. "
            f"Received: custom_modules={custom_modules!r}"
        )
    return tuple(dict.fromkeys(value))


def modules_json(custom_modules: str | Sequence[str] | None) -> str:
    """Canonical JSON of the module list (order kept: import order can matter)."""
    return json.dumps(list(check_module_names(custom_modules)))


def import_modules(custom_modules: str | Sequence[str] | None) -> tuple[str, ...]:
    """Import each named module, in order; return the names.

    Raises:
        ValueError: a name is invalid, or a module fails to import (the message names the
            module and the original error).
    """
    names = check_module_names(custom_modules)
    for name in names:
        _import(name, names)
    return names


def _import(name: str, requested: Iterable[str], why: str = "") -> None:
    try:
        importlib.import_module(name)
    except Exception as err:  # ImportError, but also whatever the module raises on import
        # keras_hub comes with this package's `kerashub` extra: say how to install it.
        hint = (
            f" ({install_hint(name)})"
            if isinstance(err, ImportError) and name.split(".")[0] in EXTRA_OF
            else ""
        )
        raise ValueError(
            f"Could not import module {name!r}{why}. Expected an importable module that "
            f"registers the model's custom classes, on the Python path of every process that "
            f"loads the model{hint}. Received: custom_modules={list(requested)!r} "
            f"({type(err).__name__}: {err})"
        ) from err


def recorded_modules(config: dict) -> tuple[str, ...]:
    """The ``"module"`` fields of every object serialized in a ``.keras`` file's config (its
    ``config.json``, see ``keras_file.read_config``), in order."""
    found: dict[str, None] = {}
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            module = node.get("module")
            if isinstance(module, str) and _MODULE_NAME.match(module):
                found.setdefault(module)
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return tuple(found)


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def import_for_model(
    config: dict, custom_modules: str | Sequence[str] | None = None, source: str = "the model"
) -> tuple[str, ...]:
    """Import what loading a ``.keras`` file with this ``config`` needs; return what was imported.

    First the user's ``custom_modules`` (in order), then the trusted modules the config records:
    the top-level package of any ``keras_hub`` class (``import keras_hub``), and recorded
    modules equal to or under one the user named. ``source`` names the file in errors.

    Raises:
        ValueError: a named module fails to import, or the file needs ``keras_hub`` (or a
            recorded submodule of a named module) and it cannot be imported.
    """
    names = import_modules(custom_modules)
    imported = list(names)
    for module in recorded_modules(config):
        trusted = next((p for p in TRUSTED_PACKAGES if _under(module, p)), None)
        target = trusted or next((module for n in names if _under(module, n)), None)
        if target is None or target in imported:
            continue
        _import(target, names, why=f" (recorded in {source!r} as {module!r})")
        imported.append(target)
    return tuple(imported)

"""One label vocabulary for every span of a pipeline: class name -> index, fixed over time.

The vocabulary comes from the config (``labels: [...]``, indices in that order) or, without
one, from the class folders of the pipeline's first span (the lowest span number present),
sorted by name. Every later span maps its folder names through it, so a span without
``digit_5`` keeps ``digit_6`` at index 1. A class name the vocabulary lacks is an error naming
it, unless growing is allowed (``grow_labels``): new names are then appended in the order they
first appear, span by span, so no existing index ever changes.

>>> vocabulary = extend({"cat": 0, "dog": 1}, ["dog", "emu"], "span-4", grow=True)
>>> vocabulary
{'cat': 0, 'dog': 1, 'emu': 2}
>>> extend(vocabulary, ["fox"], "span-5", grow=False)
Traceback (most recent call last):
ValueError: Expected only class folders the label vocabulary names ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from tfx.dsl.io import fileio

# Beside a model's saved_model.pb: its label map, so a pushed version says what its indices mean.
LABEL_MAP_FILE = "label_map.json"


def check_labels(labels: Any, name: str = "labels") -> tuple[str, ...]:
    """Checks a configured vocabulary: at least two unique class folder names.

    Raises:
        ValueError: not a list of strings, fewer than two, an empty name, a name with a
            ``/`` or a leading dot (never a class folder), or a name given twice.
    """
    ok = isinstance(labels, (list, tuple)) and len(labels) >= 2
    ok = ok and all(
        isinstance(label, str) and label and "/" not in label and not label.startswith(".")
        for label in labels
    )
    if not ok:
        raise ValueError(
            f"Invalid config `{name}`. Expected a list of at least two class folder names "
            f"(non-empty, no '/', not starting with '.'). Received: {name}={labels!r}"
        )
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(
            f"Invalid config `{name}`. Expected unique class names. Received: {duplicates} "
            f"more than once in {name}={list(labels)!r}"
        )
    return tuple(labels)


def from_names(names: Sequence[str]) -> dict[str, int]:
    """The vocabulary giving ``names`` the indices ``0..N-1`` in the order given."""
    return {name: index for index, name in enumerate(names)}


def names(label_map: dict[str, int]) -> list[str]:
    """The class names in index order."""
    return [name for name, _ in sorted(label_map.items(), key=lambda item: item[1])]


def from_json(text: str, where: str = "label_map") -> dict[str, int]:
    """Reads a label map written by ``images.label_map_to_json`` and checks it.

    Raises:
        ValueError: not JSON, not an object of names to ints, or indices that are not
            ``0..N-1``.
    """
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        value = None
    ok = isinstance(value, dict) and value
    ok = ok and all(isinstance(k, str) and type(v) is int for k, v in value.items())
    if not ok or sorted(value.values()) != list(range(len(value))):
        raise ValueError(
            "Expected a label map: a JSON object of class name -> index 0..N-1. "
            f"Received: {where}={text!r}"
        )
    return dict(sorted(value.items(), key=lambda item: item[1]))


def read_label_map_file(folder: str) -> dict[str, int] | None:
    """The ``LABEL_MAP_FILE`` in ``folder`` (a model's serving folder), or None without one.

    Raises:
        ValueError: the file is not a label map (see ``from_json``).
    """
    path = os.path.join(folder, LABEL_MAP_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as handle:
        return from_json(handle.read(), path)


def extend(
    label_map: dict[str, int],
    class_names: Iterable[str],
    where: str,
    grow: bool,
    source: str = "",
) -> dict[str, int]:
    """The vocabulary with the names it lacks appended (sorted), when ``grow``; else a check.

    Args:
        label_map: the vocabulary so far.
        class_names: the class folder names found in ``where``.
        where: what was listed, for the error (e.g. the span folder).
        grow: append unknown names instead of failing.
        source: where the vocabulary came from, for the error.

    Returns:
        ``label_map`` itself when nothing is new, else a new dict with the new names at
        ``N, N+1, ...``.

    Raises:
        ValueError: a name the vocabulary lacks and ``grow`` is false; the message names it.
    """
    unknown = sorted(set(class_names) - set(label_map))
    if not unknown:
        return label_map
    if not grow:
        known = f" ({source})" if source else ""
        raise ValueError(
            "Expected only class folders the label vocabulary names: "
            f"{names(label_map)}{known}. Received: {unknown} in {where}. Rename the folder "
            "if it is a typo; to add a class, set `grow_labels: true` (new classes get the "
            "next indices, a new head is trained and the comparison with the production "
            "model is skipped for that run)."
        )
    grown = dict(label_map)
    for name in unknown:
        grown[name] = len(grown)
    return grown

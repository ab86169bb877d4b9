"""Span patterns: how ``span-{SPAN}`` folders become ExampleGen input configs and back.

ImageExampleGen does not resolve spans itself. It gives TFX's ``FileBasedDriver`` the split
pattern ``<span_pattern>/*/*`` (class folder / file); the driver globs it, picks the latest span
(or the one a ``RangeConfig`` pins), records ``span``/``input_fingerprint`` on the Examples
artifact and rewrites the pattern to e.g. ``span-3/*/*`` before the executor runs. Globbing the
files, not the span folder, makes the fingerprint cover every image, so adding or changing an
image invalidates the cache; it also means a span folder counts only once it holds a file in
a class folder, so a half-created folder is not picked up early.

>>> make_input_config("span-{SPAN}").splits[0].pattern
'span-{SPAN}/*/*'
"""

from __future__ import annotations

import os
import re

from tfx.components.example_gen import utils
from tfx.proto import example_gen_pb2

# Matches <class folder>/<file> under the span folder.
CLASS_FILE_GLOB = "*/*"
_GLOB_CHARS = ("*", "?", "[")
_SPEC_REGEXES = (utils.SPAN_FULL_REGEX, utils.VERSION_FULL_REGEX, *map(re.escape, utils.DATE_SPECS))


def validate_span_pattern(span_pattern: str) -> str:
    """Checks a span folder pattern such as ``span-{SPAN}`` relative to ``input_base``.

    TFX's own spec rules apply (``{SPAN}`` or ``{SPAN:width}``, or the ``{YYYY}{MM}{DD}`` date
    specs, optionally with ``{VERSION}``), checked by ``utils.verify_split_pattern_specs``.

    Args:
        span_pattern: a relative folder pattern with a span spec, e.g. ``"span-{SPAN}"`` or
            ``"images/{YYYY}-{MM}-{DD}"``.

    Returns:
        The pattern without trailing slashes.

    Raises:
        ValueError: not a non-empty relative pattern, has glob characters, has no span or date
            spec, or breaks TFX's spec rules.
    """
    if not isinstance(span_pattern, str) or not span_pattern.strip("/"):
        raise ValueError(
            "Expected `span_pattern` to be a non-empty folder pattern such as 'span-{SPAN}'. "
            f"Received: span_pattern={span_pattern!r}"
        )
    if span_pattern.startswith("/") or "://" in span_pattern:
        raise ValueError(
            "Expected `span_pattern` to be relative to `input_base`, e.g. 'span-{SPAN}'. "
            f"Received: span_pattern={span_pattern!r}"
        )
    if any(char in span_pattern for char in _GLOB_CHARS):
        raise ValueError(
            "Expected `span_pattern` without glob characters (* ? [); the span spec does the "
            f"matching. Received: span_pattern={span_pattern!r}"
        )
    pattern = span_pattern.rstrip("/")
    try:
        is_span, is_date, _ = utils.verify_split_pattern_specs(
            example_gen_pb2.Input.Split(name="span", pattern=pattern)
        )
    except ValueError as error:
        raise ValueError(
            "Expected `span_pattern` to follow TFX span spec rules (one {SPAN}, or one each of "
            f"{{YYYY}}{{MM}}{{DD}}). Received: span_pattern={span_pattern!r} ({error})"
        ) from error
    if not (is_span or is_date):
        raise ValueError(
            "Expected `span_pattern` to contain {SPAN} (or {YYYY}, {MM} and {DD}), e.g. "
            f"'span-{{SPAN}}'. Received: span_pattern={span_pattern!r}"
        )
    return pattern


def make_input_config(span_pattern: str | None) -> example_gen_pb2.Input:
    """Builds the single-split ExampleGen input config for an image folder.

    Args:
        span_pattern: span folder pattern relative to ``input_base`` (e.g. ``"span-{SPAN}"``),
            or ``None`` when ``input_base`` itself holds the class folders.

    Returns:
        An ``example_gen_pb2.Input`` with one split whose pattern is
        ``<span_pattern>/*/*`` (or ``*/*``).

    Raises:
        ValueError: see ``validate_span_pattern``.
    """
    if span_pattern is None:
        return utils.make_default_input_config(CLASS_FILE_GLOB)
    pattern = validate_span_pattern(span_pattern)
    return utils.make_default_input_config(f"{pattern}/{CLASS_FILE_GLOB}")


def span_folder(input_base: str, resolved_pattern: str) -> str:
    """Returns the span folder a driver-resolved split pattern points at.

    Args:
        input_base: the component's ``input_base``.
        resolved_pattern: the split pattern after the driver filled in the span, e.g.
            ``"span-3/*/*"``.

    Returns:
        ``<input_base>/span-3`` (or ``input_base`` for the pattern ``*/*``).

    Raises:
        ValueError: the pattern does not end in ``*/*`` or still holds a span/version spec
            (the executor was run without ExampleGen's driver).
    """
    if resolved_pattern != CLASS_FILE_GLOB and not resolved_pattern.endswith("/" + CLASS_FILE_GLOB):
        raise ValueError(
            f"Expected an input split pattern ending in '/{CLASS_FILE_GLOB}' as built by "
            f"ImageExampleGen. Received: pattern={resolved_pattern!r}"
        )
    folder = resolved_pattern[: -len(CLASS_FILE_GLOB)].rstrip("/")
    if any(re.search(regex, folder) for regex in _SPEC_REGEXES):
        raise ValueError(
            "Expected a span-resolved pattern; ExampleGen's FileBasedDriver fills in {SPAN} "
            f"before the executor runs. Received: pattern={resolved_pattern!r}"
        )
    return os.path.join(input_base, folder) if folder else input_base

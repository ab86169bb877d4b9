"""Span patterns: how ``span-{SPAN}`` folders become ExampleGen input configs and back.

ImageExampleGen does not resolve spans itself. It gives TFX's ``FileBasedDriver`` the split
pattern ``<span_pattern>/*/*`` (class folder / file); the driver globs it, picks the latest span
(or the one a ``RangeConfig`` pins), records ``span``/``input_fingerprint`` on the Examples
artifact and rewrites the pattern to e.g. ``span-3/*/*`` before the executor runs. Globbing the
files, not the span folder, makes the fingerprint cover every image, so adding or changing an
image invalidates the cache; it also means a span folder counts only once it holds a file in
a class folder, so a half-created folder is not picked up early.

The driver resolves one span. A window of spans (``span_window``) is the executor's: it lists
every span folder with TFX's own glob and regex (``list_span_folders``), keeps the resolved span
and the ones before it (``select_window``), and reads them all. Nothing else is needed to
resolve it, so it works the same under LocalDagRunner and on Kubeflow Pipelines, where a
Resolver node with a span range cannot run.

>>> make_input_config("span-{SPAN}").splits[0].pattern
'span-{SPAN}/*/*'
>>> [s.span for s in select_window(list_span_folders("/data", "span-{SPAN}"), "/data/span-5", 3)]
[3, 4, 5]
"""

from __future__ import annotations

import dataclasses
import os
import re

from tfx.components.example_gen import utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2

# Matches <class folder>/<file> under the span folder.
CLASS_FILE_GLOB = "*/*"
_GLOB_CHARS = ("*", "?", "[")
_SPEC_REGEXES = (utils.SPAN_FULL_REGEX, utils.VERSION_FULL_REGEX, *map(re.escape, utils.DATE_SPECS))
# span_window value that keeps every span up to the resolved one.
ALL_SPANS = "all"


@dataclasses.dataclass(frozen=True)
class SpanFolder:
    """One span folder found under ``input_base`` (its latest version when versioned).

    Attributes:
        span: the span number (days since 1970-01-01 for ``{YYYY}{MM}{DD}`` patterns).
        path: the folder holding the class folders.
    """

    span: int
    path: str


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


def check_span_window(span_window) -> int | str:
    """Checks a ``span_window``: an int >= 1 (the last N spans) or ``"all"``.

    Raises:
        ValueError: anything else (bools are rejected).
    """
    if span_window == ALL_SPANS or (
        isinstance(span_window, int) and not isinstance(span_window, bool) and span_window >= 1
    ):
        return span_window
    raise ValueError(
        f"Invalid config `span_window`. Expected an int >= 1 (train on the last N spans) or "
        f"{ALL_SPANS!r}. Received: span_window={span_window!r}"
    )


def list_span_folders(input_base: str, span_pattern: str) -> list[SpanFolder]:
    """Every span folder under ``input_base`` that holds a file in a class folder, oldest first.

    The files are globbed and matched with TFX's own ExampleGen helpers (the glob and regex
    its driver builds for ``<span_pattern>/*/*``), so a span counts here exactly when the driver
    would count it. With ``{VERSION}``, each span's latest version is kept, as the driver does.

    Raises:
        ValueError: see ``validate_span_pattern``; a matched path without a span number.
    """
    split = example_gen_pb2.Input.Split(
        name="span", pattern=f"{validate_span_pattern(span_pattern)}/{CLASS_FILE_GLOB}"
    )
    is_span, is_date, is_version = utils.verify_split_pattern_specs(split)
    # TFX 1.16's helpers, private but pinned by the lock: the driver's own matching rules.
    glob, regex = utils._create_matching_glob_and_regex(
        input_base, split, is_span, is_date, is_version, None
    )
    latest: dict[int, tuple[int, str]] = {}
    for path in fileio.glob(glob):
        _, span, _, version = utils._find_matched_span_version_from_path(
            path, regex, is_span, is_date, is_version
        )
        folder = os.path.dirname(os.path.dirname(path.rstrip("/")))
        version = -1 if version is None else version
        if span not in latest or version > latest[span][0]:
            latest[span] = (version, folder)
    return [SpanFolder(span, latest[span][1]) for span in sorted(latest)]


def select_window(
    folders: list[SpanFolder], newest_path: str, span_window: int | str
) -> list[SpanFolder]:
    """The span the driver resolved (at ``newest_path``) and the ``span_window - 1`` before it.

    Args:
        folders: ``list_span_folders`` output, oldest first.
        newest_path: the resolved span folder (``span_folder(...)``).
        span_window: an int >= 1 or ``"all"`` (every span up to the resolved one).

    Returns:
        The selected folders, oldest first, the resolved one last. Gaps in the numbering
        are skipped: the window counts span folders that exist.

    Raises:
        ValueError: ``newest_path`` is not among ``folders`` (the data changed between the
            driver and the executor), or ``span_window`` is invalid.
    """
    span_window = check_span_window(span_window)
    paths = [folder.path.rstrip("/") for folder in folders]
    newest = newest_path.rstrip("/")
    if newest not in paths:
        raise ValueError(
            f"Expected the span folder the driver resolved among the span folders listed. "
            f"Received: {newest!r}, listed {paths}. Did the data change during the run?"
        )
    end = paths.index(newest) + 1
    start = 0 if span_window == ALL_SPANS else max(0, end - span_window)
    return folders[start:end]

"""Image-folder logic without artifacts: list a labelled folder, check decoding, build Examples.

A span folder holds one sub-folder per class::

    <span folder>/cat/0001.png
    <span folder>/dog/0002.jpg

Listed alone, class folders sorted by name get labels ``0..N-1``, so the same set of folders
always gives the same label map, whichever machine lists it. A pipeline maps every span through
one label vocabulary instead (``labels``): a span that lacks a class keeps every other label.
All I/O goes through ``tfx.dsl.io.fileio`` so the folder may live on ``gs://``.

>>> folder = list_image_folder("/data/pets/span-3")
>>> folder.label_map
{'cat': 0, 'dog': 1}
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Iterable

import tensorflow as tf
from PIL import Image
from tfx.dsl.io import fileio

# tf.Example feature names written by ImageExampleGen.
IMAGE_KEY = "image"
LABEL_KEY = "label"
LABEL_NAME_KEY = "label_name"
FILENAME_KEY = "filename"
SPAN_KEY = "span"

# The span recorded on the examples of the fixed holdout folder (real spans are >= 0).
HOLDOUT_SPAN = -1

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# The extension promises PNG or JPEG, which every TensorFlow image decoder reads; a file that
# Pillow only opens as another format (BMP, GIF...) is counted as unreadable, not ingested.
DECODABLE_FORMATS = ("PNG", "JPEG")

_MAX_LISTED = 5


@dataclasses.dataclass(frozen=True)
class ImageFile:
    """One image file found in a class folder.

    Attributes:
        path: full path (local or ``gs://``) used to read the bytes.
        filename: path relative to the span folder, ``<label_name>/<basename>``.
        label_name: name of the class folder.
        span: the span the file belongs to (0 without spans, ``HOLDOUT_SPAN`` for the
            holdout folder).
    """

    path: str
    filename: str
    label_name: str
    span: int = 0


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """The result of listing one span folder.

    Attributes:
        root: the span folder that was listed.
        label_map: class folder name -> label, ``0..N-1`` in sorted name order.
        images: files with an image extension inside class folders, sorted by ``filename``.
        skipped: relative paths of entries that are not ``<class>/<name>.{png,jpg,jpeg}``
            (other extensions, files outside class folders, hidden or nested folders).
    """

    root: str
    label_map: dict[str, int]
    images: tuple[ImageFile, ...]
    skipped: tuple[str, ...]

    def class_counts(self) -> dict[str, int]:
        """Returns the number of image files per class folder, zero for empty folders."""
        counts = dict.fromkeys(self.label_map, 0)
        for image in self.images:
            counts[image.label_name] += 1
        return counts


def make_label_map(class_names: Iterable[str]) -> dict[str, int]:
    """Maps class names to labels ``0..N-1`` in sorted order.

    Args:
        class_names: the class folder names, in any order.

    Returns:
        A dict ordered by label, e.g. ``{"cat": 0, "dog": 1}``.

    Raises:
        ValueError: no names, an empty name, or a name given twice.
    """
    names = list(class_names)
    if not names or any(not name for name in names):
        raise ValueError(f"Expected at least one non-empty class name. Received: {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"Expected unique class names. Received: {sorted(names)!r}")
    return {name: label for label, name in enumerate(sorted(names))}


def label_map_to_json(label_map: dict[str, int]) -> str:
    """Serializes a label map as compact JSON with keys in label order."""
    ordered = dict(sorted(label_map.items(), key=lambda item: item[1]))
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False)


def is_image_filename(name: str) -> bool:
    """Tells whether a file name has an image extension (case-insensitive), hidden files excluded.

    Hidden files are excluded because macOS ``._name.png`` resource forks carry an image
    extension but no image.
    """
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def _entry_names(folder: str) -> list[str]:
    # GCS listings mark folders with a trailing slash; local listings do not.
    return sorted(name.rstrip("/") for name in fileio.listdir(folder))


def _preview(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return f"[{shown}{f', ... ({more} more)' if more > 0 else ''}]"


def _class_folders(root: str) -> tuple[list[str], list[str]]:
    """The class folder names under ``root`` and the other entries, both sorted.

    Raises:
        ValueError: ``root`` is not a folder, or it holds no (non-hidden) class folders.
    """
    if not fileio.isdir(root):
        raise ValueError(
            f"Expected an image folder with one sub-folder per class. Received: {root!r}, "
            "which does not exist or is not a folder."
        )
    class_names: list[str] = []
    skipped: list[str] = []
    entries = _entry_names(root)
    for name in entries:
        if not name.startswith(".") and fileio.isdir(os.path.join(root, name)):
            class_names.append(name)
        else:
            skipped.append(name)
    if not class_names:
        received = f"entries {_preview(entries)}" if entries else "an empty folder"
        raise ValueError(
            f"Expected class folders under {root!r} (one sub-folder per label, e.g. "
            f"{os.path.join(root, 'cat', '0001.png')!r}). Received: {received}."
        )
    return class_names, skipped


def class_folder_names(root: str) -> list[str]:
    """The class folder names under ``root``, sorted; only ``root`` itself is listed.

    Raises:
        ValueError: see ``list_image_folder``.
    """
    return _class_folders(root.rstrip("/") or "/")[0]


def list_image_folder(root: str, span: int = 0) -> ImageFolder:
    """Lists a span folder laid out as ``<root>/<label>/<name>.{png,jpg,jpeg}``.

    Only metadata is read here; decoding happens in the Beam pipeline. Names starting with a dot
    are never class folders or images (``.ipynb_checkpoints``, ``.DS_Store``); they are counted
    as skipped, as is every other entry that is not an image file in a class folder.

    Args:
        root: the span folder, local or ``gs://``.
        span: the span number recorded on every ``ImageFile``.

    Returns:
        An ``ImageFolder`` with the label map, the image files and the skipped entries.

    Raises:
        ValueError: ``root`` is not a folder, or it holds no (non-hidden) class folders.
    """
    root = root.rstrip("/") or "/"
    class_names, skipped = _class_folders(root)
    images: list[ImageFile] = []
    for label_name in class_names:
        class_dir = os.path.join(root, label_name)
        # Classified by name only: one `isdir` call per file would be one request per file on GCS.
        for name in _entry_names(class_dir):
            filename = f"{label_name}/{name}"
            if is_image_filename(name):
                path = os.path.join(class_dir, name)
                images.append(ImageFile(path, filename, label_name, span))
            else:
                skipped.append(filename)
    return ImageFolder(
        root=root,
        label_map=make_label_map(class_names),
        images=tuple(sorted(images, key=lambda image: image.filename)),
        skipped=tuple(sorted(skipped)),
    )


def is_decodable(data: bytes) -> bool:
    """Tells whether Pillow fully decodes ``data`` as a PNG or JPEG image.

    ``Image.load()`` decodes every pixel, so truncated files are caught, not only bad headers.

    Args:
        data: the encoded file content.

    Returns:
        ``True`` if the bytes decode as PNG or JPEG.
    """
    try:
        with Image.open(io.BytesIO(data), formats=DECODABLE_FORMATS) as image:
            image.load()
    # Pillow signals bad data with many exception types (OSError, SyntaxError, struct.error,
    # DecompressionBombError, ...); any of them means "not a usable image". Read errors happen
    # before this call and still fail the run.
    except Exception:
        return False
    return True


def build_example(
    image: bytes, label: int, label_name: str, filename: str, span: int = 0
) -> tf.train.Example:
    """Builds the tf.Example for one image.

    Args:
        image: the encoded file, stored as-is (no re-encoding).
        label: the integer label from the label vocabulary.
        label_name: the class folder name.
        filename: path relative to the span folder, ``<label_name>/<basename>``.
        span: the span the image came from (``HOLDOUT_SPAN`` for the holdout folder), so
            the Evaluator can slice its metrics by span.

    Returns:
        A ``tf.train.Example`` with ``image``, ``label_name``, ``filename`` (bytes),
        ``label`` and ``span`` (int64).
    """

    def _int(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def _bytes(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                IMAGE_KEY: _bytes(image),
                LABEL_KEY: _int(label),
                LABEL_NAME_KEY: _bytes(label_name.encode("utf-8")),
                FILENAME_KEY: _bytes(filename.encode("utf-8")),
                SPAN_KEY: _int(span),
            }
        )
    )

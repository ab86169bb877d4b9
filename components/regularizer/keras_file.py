"""A Keras model and its ``.keras`` file: load it, read its archive, key and digest its weights.

What the regularizer, the BackboneLoader, the Trainer, the lineage report and the CLI all do with
a model file, in one place (plain Keras, no TFX):

* ``load_keras_model``: load a ``.keras`` file after importing the modules that register its
  custom classes (``custom_modules``), with ``safe_mode`` honoured and an error for every way
  the file can be wrong;
* the archive: ``read_config`` (its ``config.json``), ``copy_member``, ``replace_config``;
* the model's structure: ``iter_layers`` (every layer once, with a readable path),
  ``layer_keys`` and ``weight_paths`` (structural keys that survive a reload, in any process);
* ``weights_sha256`` (and ``weights_digest``, the same on a helper thread): the checksum every
  component records and checks.

>>> model = load_keras_model("model.keras", custom_modules=["my_project.layers"])  # doctest: +SKIP
>>> weights_sha256(model)  # doctest: +SKIP
'3f5c...'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np

from backbone_regularizer.components.regularizer.custom_modules import import_for_model

# Members of a Keras v3 `.keras` archive (keras/src/saving/saving_lib.py).
CONFIG, METADATA = "config.json", "metadata.json"
WEIGHTS = ("model.weights.h5", "model.weights.npz")
ASSETS = "assets/"


def load_keras_model(
    path: str | os.PathLike, safe_mode: bool = True, custom_modules: Sequence[str] = ()
) -> keras.Model:
    """Load a ``.keras`` file with a clear error for every way it can be wrong.

    ``custom_modules`` are imported first (they register custom classes), then the trusted
    modules the file records (``keras_hub``): see ``custom_modules.import_for_model``.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a directory (e.g. a SavedModel), not a ``.keras`` zip, a corrupt archive,
            a Lambda layer under ``safe_mode``, an unregistered custom class, or a module in
            ``custom_modules`` (or one the file needs) that fails to import.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Expected a .keras model file. Received: {str(path)!r} (missing)")
    if path.is_dir():
        hint = (
            " It looks like a TF SavedModel; Keras 3 cannot load those: save the model with "
            "`model.save('model.keras')`."
            if (path / "saved_model.pb").exists()
            else ""
        )
        raise ValueError(f"Expected a .keras model file. Received: directory {str(path)!r}.{hint}")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ValueError(
            "Expected a Keras v3 `.keras` archive (a zip file). "
            f"Received: {str(path)!r}, which is not one (corrupt or another format)."
        )
    try:
        config = read_config(path)
    except ValueError as err:
        raise ValueError(f"Could not load Keras model {str(path)!r}: {err}") from err
    import_for_model(config, custom_modules, source=path.name)
    try:
        model = keras.saving.load_model(path, safe_mode=safe_mode, compile=False)
    except Exception as err:  # Keras raises many types here; name the file and the cause.
        text = str(err)
        if "safe_mode" in text or "Lambda" in text:
            raise ValueError(
                f"Refusing to load {str(path)!r} with safe_mode=True: it contains a Lambda "
                "layer (arbitrary code). Re-run with safe mode explicitly disabled only if "
                "you trust the file."
            ) from err
        raise ValueError(f"Could not load Keras model {str(path)!r}: {text}") from err
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected a keras.Model in {str(path)!r}. Received: {type(model).__name__}"
        )
    return model


def read_config(archive: str | os.PathLike | zipfile.ZipFile) -> dict:
    """The ``config.json`` of a ``.keras`` archive (a path or an open zip), parsed.

    Raises:
        ValueError: not a zip, or no readable ``config.json`` in it.
    """
    try:
        with contextlib.ExitStack() as stack:
            if not isinstance(archive, zipfile.ZipFile):
                archive = stack.enter_context(zipfile.ZipFile(archive))
            return json.loads(archive.read(CONFIG))
    except (KeyError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"Expected a .keras archive holding a JSON {CONFIG}. Received: {err}"
        ) from err


def copy_member(src: zipfile.ZipFile, info: zipfile.ZipInfo, dst: zipfile.ZipFile) -> None:
    """Copy one member of ``src`` into ``dst`` as it is (name, date, compression)."""
    with src.open(info) as data, dst.open(info, "w") as out:
        while chunk := data.read(1 << 24):
            out.write(chunk)


def replace_config(path: str | os.PathLike, config: dict) -> None:
    """Rewrite the ``.keras`` file at ``path`` with ``config`` as its ``config.json``; every
    other member is copied as it is. Written beside ``path`` and renamed over it, so ``path``
    is always either the old file or the new one."""
    path = Path(path)
    fd, staged = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".keras")
    os.close(fd)
    try:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(staged, "w") as dst:
            for info in src.infolist():
                if info.filename == CONFIG:
                    dst.writestr(info, json.dumps(config))
                else:
                    copy_member(src, info, dst)
    except BaseException:
        os.unlink(staged)
        raise
    os.replace(staged, path)


def iter_layers(model: keras.layers.Layer) -> Iterator[tuple[str, keras.layers.Layer, str]]:
    """Yield ``(path, layer, parent_path)`` depth-first, each layer once (shared layers too).

    Paths are built from layer names, which the ``.keras`` format preserves, so the same
    weight has the same path in memory and after a reload. ``Layer._layers`` (keras 3.12)
    reaches the sublayers ``model.layers`` does not expose (RNN cells, attention projections).
    """
    seen: set[int] = set()

    def walk(layer: keras.layers.Layer, path: str, parent: str):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        yield path, layer, parent
        for child in layer._layers:
            yield from walk(child, f"{path}/{child.name}", path)

    yield from walk(model, model.name, "")


def layer_keys(model: keras.layers.Layer) -> dict[int, str]:
    """A structural key per layer (``0/3/1``: child positions from the root), by ``id``.

    Unlike names, which a model that rebuilds its layers on load may regenerate
    (``dense_16`` becomes ``dense_33``, the root ``vgg_backbone_1`` becomes ``vgg_backbone_2``),
    positions are fixed by the architecture: the same weight has the same key in memory, after
    a reload and in another process. Keys match the walk of ``iter_layers``.
    """
    keys: dict[int, str] = {}

    def walk(layer: keras.layers.Layer, key: str):
        if id(layer) in keys:
            return
        keys[id(layer)] = key
        for index, child in enumerate(layer._layers):
            walk(child, f"{key}/{index}")

    walk(model, "0")
    return keys


def own_variables(layer: keras.layers.Layer) -> list[keras.Variable]:
    """Variables created by this layer itself (not by its sublayers), trainable ones first."""
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def weight_paths(model: keras.layers.Layer) -> list[tuple[str, keras.Variable]]:
    """Every variable of the model once, keyed by a stable path, in walk order.

    The key is the layer's structural key (``layer_keys``) and the variable's position in its
    layer: layer and variable *names* can be auto-generated (``variable_17`` in ConvNeXt's
    LayerScale, ``dense_16`` inside a KerasHub backbone) and change on reload.
    """
    out: list[tuple[str, keras.Variable]] = []
    seen: set[int] = set()
    keys = layer_keys(model)
    for _, layer, _ in iter_layers(model):
        for index, variable in enumerate(own_variables(layer)):
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append((f"{keys[id(layer)]}[{index}]", variable))
    return out


def digest_weights(weights: Iterable[tuple[str, np.ndarray]]) -> str:
    """SHA-256 over each ``(path, value)``: path, dtype, shape, then the raw bytes, in order."""
    digest = hashlib.sha256()
    for path, value in weights:
        value = np.ascontiguousarray(value)
        digest.update(f"{path}|{value.dtype.str}|{value.shape}\n".encode())
        # A uint8 view of the same memory: no copy, and any dtype (bfloat16 too) hashes.
        digest.update(value.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def weights_sha256(model: keras.Model) -> str:
    """SHA-256 over every variable's path, dtype, shape and raw bytes, in walk order.

    Paths are structural keys (``weight_paths``), so the digest is identical for a model in
    memory and the same model saved and reloaded, in any process.
    """
    # One variable in memory at a time: a copy of a large model's weights would double its RAM.
    return digest_weights((path, np.asarray(v)) for path, v in weight_paths(model))


@contextlib.contextmanager
def weights_digest(model: keras.Model) -> Iterator[Future]:
    """``weights_sha256(model)`` on a helper thread; yields its future.

    SHA-256 releases the GIL, so the hash runs while the caller does the forward pass (or
    anything else that reads the model and does not change it). Leaving the block waits for
    the thread, so no hash outlives the block.

    >>> with weights_digest(model) as digest:  # doctest: +SKIP
    ...     outputs = predict_probe(model, batch)
    ...     sha256 = digest.result()
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="weights-sha256") as pool:
        yield pool.submit(weights_sha256, model)

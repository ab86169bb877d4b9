"""Write the regularized ``.keras`` file with the source file's weights, copied byte for byte.

A ``.keras`` file is a zip of ``metadata.json``, ``config.json``, the weights
(``model.weights.h5``) and optional ``assets/``. Regularizing changes only the config (the
layers' regularizer arguments, ``trainable`` flags, the plan envelope of ``plan.py`` where the
file needs it), never a weight: so instead of re-serializing every variable (``model.save``),
``RegularizedArchive`` copies the source's weights and assets member as is, on a helper thread
that runs while the source is loaded and fingerprinted, then writes the new config and metadata
exactly as ``model.save`` would. Whether the result is right is not assumed: ``regularize_file``
reloads the written file and runs all five checks on it (check 4: the weights checksum equals
the input model's).

A source whose archive holds anything else (e.g. optimizer state of a compiled model, which
a ``compile=False`` load ignores and ``model.save`` would drop) is written with
``save_regularized`` instead.
"""

from __future__ import annotations

import json
import os
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import keras

# keras.src: the function `model.save` uses to write config.json and metadata.json, so the
# copied archive's config is byte-for-byte what `model.save` writes (shared objects included).
from keras.src.saving import saving_lib

from backbone_regularizer.components.regularizer.file_format import (
    FileFormat,
    file_format,
    save_regularized,
)
from backbone_regularizer.components.regularizer.keras_file import (
    ASSETS,
    CONFIG,
    METADATA,
    WEIGHTS,
    copy_member,
    read_config,
)
from backbone_regularizer.components.regularizer.plan import wrap_config


def copyable_members(src: zipfile.ZipFile) -> list[zipfile.ZipInfo] | None:
    """The members of a ``.keras`` archive to copy unchanged (weights, assets), or None when
    it holds anything else or records a compiled model (its optimizer state is not ours to
    carry over)."""
    names = {info.filename for info in src.infolist()}
    if CONFIG not in names or not names & set(WEIGHTS):
        return None
    if any(n not in (CONFIG, METADATA, *WEIGHTS) and not n.startswith(ASSETS) for n in names):
        return None
    if read_config(src).get("compile_config"):
        return None
    return [i for i in src.infolist() if i.filename not in (CONFIG, METADATA)]


class RegularizedArchive:
    """Write ``dst`` as the regularized form of the model loaded from ``src``.

    ``RegularizedArchive(src, dst)`` starts copying ``src``'s weights and assets into ``dst`` on
    a helper thread; ``finish(model)`` waits for it and adds ``model``'s config (inside the plan
    envelope where ``file_format.file_format`` says the file needs it) and metadata. Use it as a
    context manager: leaving the block waits for the copy, and ``dst`` is complete only if
    ``finish`` returned.

    >>> with RegularizedArchive("src.keras", "staged/out.keras") as archive:  # doctest: +SKIP
    ...     report = regularize(model, spec)
    ...     archive.finish(model)
    """

    def __init__(self, src: str | os.PathLike, dst: str | os.PathLike):
        self.src, self.dst = Path(src), Path(dst)
        self.copied_weights = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keras-archive")
        self._copy: Future = self._pool.submit(self._copy_members)

    def _copy_members(self) -> zipfile.ZipFile | None:
        with zipfile.ZipFile(self.src) as src:
            members = copyable_members(src)
            if members is None:
                return None
            out = zipfile.ZipFile(self.dst, "w")
            try:
                for info in members:
                    copy_member(src, info, out)
            except BaseException:
                out.close()
                raise
        return out

    def finish(self, model: keras.Model) -> FileFormat:
        """Complete ``dst`` with ``model``'s config (or save it whole, see above); return the
        format written (``file_format.file_format``)."""
        out = self._copy.result()
        if out is None:
            return save_regularized(model, self.dst)
        written = file_format(model)
        with out:
            config_json, metadata_json = saving_lib._serialize_model_as_json(model)
            if written.envelope:
                config_json = json.dumps(wrap_config(model, json.loads(config_json)))
            out.writestr(METADATA, metadata_json)
            out.writestr(CONFIG, config_json)
        self.copied_weights = True
        return written

    def close(self) -> None:
        """Wait for the copy; close the archive if ``finish`` did not run."""
        self._pool.shutdown(wait=True)
        if self._copy.done() and not self._copy.exception():
            out = self._copy.result()
            if out is not None and out.fp is not None:
                out.close()

    def __enter__(self) -> RegularizedArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

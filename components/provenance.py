"""Provenance records: what made an artifact, written last inside it, read and checked safely.

Every step of ours writes ``provenance.json`` into each artifact it produces, after the artifact
is complete (a record means a complete artifact). A record names the step, the orchestrator's
identifiers as given, start and end time, the exec properties, package versions, the inputs'
URIs and content digests, the SHA-256 of every file the artifact holds and the records of
everything upstream (``chain``), so one file is enough to audit an artifact that was copied
elsewhere (the pushed model)::

    {"schema": "backbone-regularizer.provenance", "version": 1,
     "artifact": {"key": "model", "uri": ".../BackboneRegularizer/model/7", "type": "Model",
                  "folder": "", "properties": {...}, "digest": "sha256:...",
                  "files": {"Format-Serving/model.keras": {"sha256": "...", "bytes": 123}}},
     "step": {"component": "BackboneRegularizer", "executor": "...", "started": "...Z",
              "finished": "...Z", "hash_seconds": 0.1, "orchestrator": {...}},
     "exec_properties": {...}, "packages": {...},
     "inputs": {"backbone": [{"uri": ..., "type": "Model", "digest": "sha256:...",
                              "digest_from": "record" | "hashed"}]},
     "outputs": {"model": [{"uri": ..., "type": "Model", "digest": "sha256:..."}]},
     "chain": [<the upstream records, without their own chains>]}

``files`` lists every file under the record's folder (``<uri>/<folder>``) except the record
itself, by path relative to that folder, so a copy of the folder verifies like the original.
An artifact's ``digest`` is the SHA-256 of its sorted ``path, sha256, bytes`` lines.

Reading trusts nothing: ``parse_record`` refuses a file over ``MAX_RECORD_BYTES``, nesting
deeper than ``MAX_DEPTH``, duplicate keys, NaN, wrong types and file names that leave the
folder (``..``, absolute, backslashes), each with a ``RecordError`` saying what was expected.
Plain Python and ``tfx.dsl.io.fileio`` (local, ``gs://``, ``s3://``); no TFX types.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import posixpath
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tfx.dsl.io import fileio

RECORD_FILE = "provenance.json"
SCHEMA = "backbone-regularizer.provenance"
VERSION = 1
# Bounds on what a reader accepts: a record of ours is a few kB (the chain of a pushed model
# with 10^3 example shards is well under 1 MiB).
MAX_RECORD_BYTES = 16 * 2**20
MAX_DEPTH = 16
MAX_FILES = 200_000
MAX_PATH_CHARS = 1024
CHUNK_BYTES = 2**20
# Packages whose versions a record names (those not installed are left out).
PACKAGES = (
    "backbone-regularizer",
    "tfx",
    "tensorflow",
    "keras",
    "keras-hub",
    "apache-beam",
    "tensorflow-model-analysis",
    "ml-metadata",
    "kfp",
)


class RecordError(ValueError):
    """A provenance record that cannot be read or does not have the expected form."""


# ---------------------------------------------------------------------------------------------
# Digests


def hash_file(uri: str) -> tuple[str, int]:
    """SHA-256 (hex) and size of one file, streamed in 1 MiB chunks (memory stays bounded)."""
    digest = hashlib.sha256()
    size = 0
    with fileio.open(uri, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def list_files(folder: str) -> list[str]:
    """Every file under ``folder`` by relative POSIX path, sorted; the folder's own record is
    left out (the record of a copied record's folder is the copy's, not a file of it)."""
    folder = folder.rstrip("/")
    found = []
    for dirpath, _, files in fileio.walk(folder):
        dirpath = dirpath.decode() if isinstance(dirpath, bytes) else dirpath
        relative = posixpath.relpath(dirpath.rstrip("/"), folder) if dirpath != folder else ""
        for name in files:
            name = name.decode() if isinstance(name, bytes) else name
            path = posixpath.join(relative, name) if relative not in ("", ".") else name
            if path != RECORD_FILE:
                found.append(path)
    return sorted(found)


def digest_files(folder: str, workers: int = 2) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "bytes"}}`` of every file under ``folder``.

    Files are hashed on ``workers`` threads: file reads and hashlib release the GIL, so two
    cores hash two shards at once.
    """
    hashed = _hash_all(folder, list_files(folder), workers)
    return {path: {"sha256": sha, "bytes": size} for path, (sha, size) in hashed.items()}


def _hash_all(folder: str, paths: list[str], workers: int) -> dict[str, tuple[str, int]]:
    folder = folder.rstrip("/")
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda p: hash_file(f"{folder}/{p}"), paths))
    return dict(zip(paths, results, strict=True))


def manifest_digest(files: Mapping[str, Mapping[str, Any]]) -> str:
    """One digest for a set of files: SHA-256 of the sorted ``path\\tsha256\\tbytes`` lines."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\t{files[path]['sha256']}\t{files[path]['bytes']}\n".encode())
    return "sha256:" + digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Where records are


def record_folder(uri: str, folder: str = "") -> str:
    return f"{uri.rstrip('/')}/{folder}".rstrip("/") if folder else uri.rstrip("/")


def record_uri(folder: str) -> str:
    return f"{folder.rstrip('/')}/{RECORD_FILE}"


# Where a record may be inside an artifact: its root, or (a Trainer model) the serving folder
# the Pusher copies, so the record travels with every pushed copy (TFX's
# ``path_utils.serving_model_dir``, ``model_artifact.serving_dir``).
SERVING_FOLDER = "Format-Serving"
RECORD_FOLDERS = ("", SERVING_FOLDER)


def find_record(uri: str) -> str | None:
    """The record file of the artifact at ``uri`` (root first, then ``Format-Serving``)."""
    for folder in RECORD_FOLDERS:
        path = record_uri(record_folder(uri, folder))
        if fileio.exists(path):
            return path
    return None


def remove_records(uri: str) -> None:
    """Remove the records an earlier attempt left in the artifact at ``uri``: a retried step
    writes its files again, and no record may describe a mix of two attempts."""
    for folder in RECORD_FOLDERS:
        path = record_uri(record_folder(uri, folder))
        if fileio.exists(path):
            fileio.remove(path)


# ---------------------------------------------------------------------------------------------
# Building and writing


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def json_safe(value: Any) -> Any:
    """``value`` as JSON data: mappings and sequences kept, anything else as its ``str``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return str(value)


def input_entry(uri: str, type_name: str, workers: int = 2) -> tuple[dict, dict | None]:
    """An input's entry and its own record (None for an artifact without one).

    The digest comes from the input's record when it has one (``digest_from: "record"``;
    ``backbone-reg lineage --verify`` re-hashes it), else from hashing its files now.

    Raises:
        RecordError: the input's record is malformed.
    """
    path = find_record(uri)
    if path is not None:
        record = read_record(path)
        artifact = record["artifact"]
        if same_uri(artifact["uri"], uri):
            entry = {"uri": uri, "type": type_name, "digest": artifact["digest"]}
            return entry | {"digest_from": "record"}, record
    files = digest_files(uri, workers)
    entry = {"uri": uri, "type": type_name, "digest": manifest_digest(files)}
    return entry | {"digest_from": "hashed", "files": len(files)}, None


def same_uri(a: str, b: str) -> bool:
    def norm(uri: str) -> str:
        uri = uri.rstrip("/")
        return uri if "://" in uri else os.path.realpath(uri)

    return bool(a) and bool(b) and norm(a) == norm(b)


def merge_chain(upstream: Iterable[dict]) -> list[dict]:
    """The inputs' records and their chains as one flat list, each artifact once, oldest
    first (a record without its ``chain``: the chain is the list itself)."""
    chain: dict[tuple[str, str], dict] = {}
    for record in upstream:
        for item in [*record.get("chain", []), record]:
            item = {k: v for k, v in item.items() if k != "chain"}
            key = (item["artifact"]["uri"].rstrip("/"), item["artifact"]["digest"])
            chain.setdefault(key, item)
    return sorted(chain.values(), key=lambda r: (r["step"]["finished"], r["artifact"]["uri"]))


def artifact_record(
    artifact: dict,
    step: dict,
    exec_properties: Mapping[str, Any],
    inputs: dict[str, list[dict]],
    outputs: dict[str, list[dict]],
    chain: list[dict],
    packages: dict[str, str],
) -> dict:
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "artifact": artifact,
        "step": step,
        # TFX's private properties (``_beam_pipeline_args``) may carry credentials: left out.
        "exec_properties": json_safe(
            {k: v for k, v in exec_properties.items() if not str(k).startswith("_")}
        ),
        "packages": packages,
        "inputs": inputs,
        "outputs": outputs,
        "chain": chain,
    }


def write_record(folder: str, record: dict) -> str:
    """Write ``record`` as ``<folder>/provenance.json`` (checked first); return its URI.

    Written to a temporary name, then renamed, so a reader sees a whole record or none.
    """
    text = json.dumps(record, indent=1, sort_keys=True, allow_nan=False)
    parse_record(text.encode(), where="the record being written")
    path = record_uri(folder)
    staging = f"{path}.tmp-{os.getpid()}"
    with fileio.open(staging, "w") as handle:
        handle.write(text)
    fileio.rename(staging, path, overwrite=True)
    return path


# ---------------------------------------------------------------------------------------------
# Reading


def read_record(path: str) -> dict:
    """Read and check one record file (see ``parse_record``).

    Raises:
        RecordError: missing, too large, or malformed.
    """
    if not fileio.exists(path):
        raise RecordError(f"Expected a provenance record. Received: no file at {path!r}")
    size = fileio.stat(path).length
    if size > MAX_RECORD_BYTES:
        raise RecordError(
            f"Expected a provenance record of at most {MAX_RECORD_BYTES} bytes. "
            f"Received: {size} bytes at {path!r}"
        )
    with fileio.open(path, "rb") as handle:
        data = handle.read(MAX_RECORD_BYTES + 1)
    return parse_record(data, where=path)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    found: dict = {}
    for key, value in pairs:
        if key in found:
            raise RecordError(f"Expected unique keys. Received: {key!r} twice")
        found[key] = value
    return found


def _no_constant(name: str) -> Any:
    raise RecordError(f"Expected finite JSON numbers. Received: {name}")


def _max_depth(value: Any) -> int:
    """Nesting depth of parsed JSON, iteratively (no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_record(data: bytes, where: str = "record") -> dict:
    """Parse and check a record's bytes: safe JSON only, the expected form, safe file names.

    Raises:
        RecordError: the message names the problem, what was expected and ``where``.
    """
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(
            f"Expected a provenance record of at most {MAX_RECORD_BYTES} bytes. "
            f"Received: more at {where}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordError(f"Expected UTF-8 JSON. Received: {err} in {where}") from None
    try:
        record = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:  # the C parser stops at the interpreter's recursion limit
        raise RecordError(
            f"Expected JSON nested at most {MAX_DEPTH} levels deep. Received: deeper in {where}"
        ) from None
    except RecordError as err:
        raise RecordError(f"{err} (in {where})") from None
    except ValueError as err:
        raise RecordError(
            f"Expected a JSON provenance record. Received: {err} in {where}"
        ) from None
    try:
        check_record(record)
    except RecordError as err:
        raise RecordError(f"{err} (in {where})") from None
    return record


def _expect(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = " or ".join(k.__name__ for k in kinds)
        raise RecordError(
            f"Expected {name} to be {expected}. Received: {type(value).__name__} "
            f"{json.dumps(value)[:80] if _jsonable(value) else ''}".rstrip()
        )
    return value


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def check_relative_path(path: Any, name: str = "a file name") -> str:
    """A file name from a record: relative, POSIX, inside its folder.

    Raises:
        RecordError: absolute, ``..``/``.``/empty segments, backslashes, NUL, a scheme, or
            longer than ``MAX_PATH_CHARS``.
    """
    _expect(path, str, name)
    bad = (
        not path
        or len(path) > MAX_PATH_CHARS
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or "://" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
    )
    if bad:
        raise RecordError(
            f"Expected {name} relative to the artifact folder, without '..', '.', empty "
            f"segments or backslashes. Received: {path[:120]!r}"
        )
    return path


def _check_digest(value: Any, name: str) -> str:
    _expect(value, str, name)
    hexpart = value.removeprefix("sha256:")
    if len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise RecordError(f"Expected {name} to be a SHA-256 in hex. Received: {value[:80]!r}")
    return value


def _check_files(files: Any, name: str) -> None:
    _expect(files, dict, name)
    if len(files) > MAX_FILES:
        raise RecordError(f"Expected at most {MAX_FILES} files in {name}. Received: {len(files)}")
    for path, entry in files.items():
        check_relative_path(path, f"a file name in {name}")
        _expect(entry, dict, f"{name}[{path!r}]")
        _check_digest(entry.get("sha256"), f"{name}[{path!r}].sha256")
        size = _expect(entry.get("bytes"), int, f"{name}[{path!r}].bytes")
        if size < 0:
            raise RecordError(f"Expected {name}[{path!r}].bytes >= 0. Received: {size}")


def _check_artifact(artifact: Any, name: str) -> None:
    _expect(artifact, dict, name)
    for key in ("uri", "type", "key"):
        _expect(artifact.get(key), str, f"{name}.{key}")
    folder = _expect(artifact.get("folder", ""), str, f"{name}.folder")
    if folder:
        check_relative_path(folder, f"{name}.folder")
    _expect(artifact.get("properties", {}), dict, f"{name}.properties")
    _check_files(artifact.get("files"), f"{name}.files")
    _check_digest(artifact.get("digest"), f"{name}.digest")
    if artifact["digest"] != manifest_digest(artifact["files"]):
        raise RecordError(
            f"Expected {name}.digest to be the digest of {name}.files. Received: "
            f"{artifact['digest']} for files whose digest is {manifest_digest(artifact['files'])}"
        )


def _check_links(links: Any, name: str) -> None:
    _expect(links, dict, name)
    for key, items in links.items():
        _expect(items, list, f"{name}[{key!r}]")
        for index, item in enumerate(items):
            where = f"{name}[{key!r}][{index}]"
            _expect(item, dict, where)
            _expect(item.get("uri"), str, f"{where}.uri")
            _expect(item.get("type"), str, f"{where}.type")
            _check_digest(item.get("digest"), f"{where}.digest")


def _check_one(record: Any, name: str) -> None:
    _expect(record, dict, name)
    if record.get("schema") != SCHEMA:
        raise RecordError(
            f"Expected {name}.schema {SCHEMA!r}. Received: {str(record.get('schema'))[:80]!r}"
        )
    if record.get("version") != VERSION:
        raise RecordError(
            f"Expected {name}.version {VERSION} (this reader's). Received: "
            f"{str(record.get('version'))[:20]!r}"
        )
    _check_artifact(record.get("artifact"), f"{name}.artifact")
    step = _expect(record.get("step"), dict, f"{name}.step")
    for key in ("component", "started", "finished"):
        _expect(step.get(key), str, f"{name}.step.{key}")
    _expect(step.get("orchestrator", {}), dict, f"{name}.step.orchestrator")
    _expect(record.get("exec_properties", {}), dict, f"{name}.exec_properties")
    _expect(record.get("packages", {}), dict, f"{name}.packages")
    _check_links(record.get("inputs", {}), f"{name}.inputs")
    _check_links(record.get("outputs", {}), f"{name}.outputs")


def check_record(record: Any) -> dict:
    """Check the form of a parsed record and of every record in its chain.

    Raises:
        RecordError: the first problem found, naming the field.
    """
    if _max_depth(record) > MAX_DEPTH:
        raise RecordError(f"Expected JSON nested at most {MAX_DEPTH} levels deep.")
    _check_one(record, "record")
    chain = _expect(record.get("chain", []), list, "record.chain")
    for index, item in enumerate(chain):
        _check_one(item, f"record.chain[{index}]")
        if "chain" in item:
            raise RecordError(f"Expected record.chain[{index}] without a chain of its own.")
    return record


# ---------------------------------------------------------------------------------------------
# Verifying


def verify_files(folder: str, files: Mapping[str, Mapping[str, Any]], workers: int = 2) -> list:
    """Re-hash the files a record lists under ``folder``.

    Returns:
        ``[{"file", "problem", "expected", "received"}]``: files changed (digest or size),
        missing, or present but not in the record; empty when everything matches.
    """
    problems = []
    if not fileio.exists(folder):
        return [
            {
                "file": folder,
                "problem": "missing folder",
                "expected": f"{len(files)} files",
                "received": "no such folder",
            }
        ]
    present = set(list_files(folder))
    listed = sorted(files)
    to_hash = [p for p in listed if p in present]
    hashed = _hash_all(folder, to_hash, workers)
    for path in listed:
        uri = f"{folder.rstrip('/')}/{path}"
        if path not in present:
            problems.append(
                {"file": uri, "problem": "missing", "expected": files[path]["sha256"]}
                | {"received": None}
            )
            continue
        sha, size = hashed[path]
        if sha != files[path]["sha256"] or size != files[path]["bytes"]:
            problems.append(
                {"file": uri, "problem": "changed", "expected": files[path]["sha256"]}
                | {"received": sha}
            )
    for path in sorted(present - set(files)):
        problems.append(
            {
                "file": f"{folder.rstrip('/')}/{path}",
                "problem": "not in the record",
                "expected": None,
                "received": hash_file(f"{folder.rstrip('/')}/{path}")[0],
            }
        )
    return problems


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started

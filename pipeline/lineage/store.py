"""Lineage from the artifact store alone: the provenance records our steps write, no MLMD.

``scan(root)`` reads every ``provenance.json`` under a pipeline's root (local, ``gs://``,
``s3://``) and every TFMA ``eval_config.json``; the push destination is found from the
``latest_pushed_model`` records (its ``push_destination``) and read too. From a pushed model
(a copy of the Trainer's ``Format-Serving`` folder, record included) the chain is::

    pushed model -> Evaluator blessing and evaluation (TFMA's eval_config.json names the
    candidate model it evaluated; the blessing is the same execution's sibling output)
    -> trained model (Trainer record) -> regularized backbone (BackboneRegularizer record)
    -> backbone (BackboneLoader record, or an imported artifact: hashed, no record)
    -> examples (ImageExampleGen record: span, split counts, label map)

    store = scan("runs/demo")
    result = store_lineage(store)            # {"summary", "tree"}, same shapes as MLMD's
    problems = verify_chain(store, result)   # re-hash every artifact on the chain

Stock TFX steps write no record: the Evaluator's and Pusher's outputs are identified from
TFMA's files and the Pusher's copies, and have no producer ids, times or output digests.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tfx.dsl.io import fileio

from backbone_regularizer.components import provenance

EVAL_CONFIG_FILE = "eval_config.json"
BLESSING_FILES = ("BLESSED", "NOT_BLESSED")
TRAINER = "Trainer"
LATEST_PUSHED = "latest_pushed_model"


@dataclass
class Found:
    """A record as read from the store: where it lies and what it says."""

    location: str  # the folder holding provenance.json
    record: dict

    @property
    def artifact(self) -> dict:
        return self.record["artifact"]

    @property
    def component(self) -> str:
        return self.record["step"]["component"]

    @property
    def produced_at(self) -> str:
        """The folder the record describes where its step wrote it."""
        return provenance.record_folder(self.artifact["uri"], self.artifact.get("folder", ""))

    @property
    def is_copy(self) -> bool:
        return not provenance.same_uri(self.location, self.produced_at)


@dataclass
class Store:
    roots: list[str]
    records: list[Found] = field(default_factory=list)
    evaluations: dict[str, dict] = field(default_factory=dict)  # folder -> eval_config.json
    push_destinations: list[str] = field(default_factory=list)

    def original(self, uri: str, folder: str = "") -> Found | None:
        """The record an artifact's step wrote, found where it wrote it."""
        wanted = provenance.record_folder(uri, folder)
        for found in self.records:
            if not found.is_copy and provenance.same_uri(found.location, wanted):
                return found
        return None

    def by_artifact(self, uri: str) -> Found | None:
        for found in self.records:
            if not found.is_copy and provenance.same_uri(found.artifact["uri"], uri):
                return found
        return None


def _walk(root: str) -> Iterator[tuple[str, list[str]]]:
    for dirpath, _, files in fileio.walk(root):
        dirpath = dirpath.decode() if isinstance(dirpath, bytes) else dirpath
        yield dirpath.rstrip("/"), [f.decode() if isinstance(f, bytes) else f for f in files]


def _read_json(path: str) -> dict:
    with fileio.open(path) as handle:
        return json.loads(handle.read())


def scan(root: str, prepare: Callable[[str], None] | None = None) -> Store:
    """Read every record and TFMA evaluation under ``root``, then the push destination.

    ``prepare(uri)`` runs before a location is read (the CLI registers ``s3://`` there, only
    when a location needs it).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        provenance.RecordError: a malformed record (named with its path).
    """
    root = root.rstrip("/")
    prepare = prepare or (lambda uri: None)
    prepare(root)
    if not fileio.exists(root):
        raise FileNotFoundError(
            f"Expected a pipeline root holding provenance records. Received: {root!r} (missing)"
        )
    store = Store(roots=[root])
    _scan_into(store, root)
    destinations = []
    for found in store.records:
        if found.component == LATEST_PUSHED:
            destination = found.record["exec_properties"].get("push_destination")
            if isinstance(destination, str) and destination not in destinations:
                destinations.append(destination)
    store.push_destinations = destinations
    for destination in destinations:
        inside = any(
            destination.rstrip("/") == r or destination.startswith(r + "/") for r in store.roots
        )
        if not inside:
            prepare(destination)
        if not inside and fileio.exists(destination):
            store.roots.append(destination.rstrip("/"))
            _scan_into(store, destination.rstrip("/"))
    return store


def _scan_into(store: Store, root: str) -> None:
    for folder, files in _walk(root):
        if provenance.RECORD_FILE in files:
            path = provenance.record_uri(folder)
            store.records.append(Found(folder, provenance.read_record(path)))
        if EVAL_CONFIG_FILE in files:
            try:
                store.evaluations[folder] = _read_json(posixpath.join(folder, EVAL_CONFIG_FILE))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # not TFMA's: not an evaluation


def _version_of(found: Found, destinations: list[str]) -> int | None:
    parent, name = posixpath.split(found.location.rstrip("/"))
    for destination in destinations:
        if provenance.same_uri(parent, destination) and name.isdigit():
            return int(name)
    return None


def pushed_copies(store: Store) -> list[Found]:
    """Copies of a Trainer model's record elsewhere: pushed versions and Pusher artifacts
    (not a copy inside another artifact of ours, such as latest_pushed_model's baseline)."""
    originals = [f.location for f in store.records if not f.is_copy]
    return [
        f
        for f in store.records
        if f.is_copy
        and f.component == TRAINER
        and f.artifact["key"] == "model"
        and not any(f.location.startswith(o.rstrip("/") + "/") for o in originals)
    ]


def find_pushed(store: Store, pushed_model: str | None = None) -> tuple[Found, Found | None]:
    """The pushed version folder to trace (and the Pusher's artifact copy of the same model).

    Without ``pushed_model``, the newest version under the push destination.

    Raises:
        LookupError: no such pushed model; the message lists those the store holds.
    """
    copies = pushed_copies(store)
    versions = [(v, f) for f in copies if (v := _version_of(f, store.push_destinations))]
    if pushed_model is not None:
        matches = [f for f in copies if provenance.same_uri(f.location, pushed_model)]
        if not matches:
            raise LookupError(
                f"Expected a pushed model with a provenance record. Received: no match for "
                f"{pushed_model!r}; pushed models in the store: {[f.location for f in copies]}"
            )
        chosen = matches[0]
    elif versions:
        chosen = max(versions, key=lambda item: item[0])[1]
    elif copies:
        chosen = max(copies, key=lambda f: f.record["step"]["finished"])
    else:
        raise LookupError(
            "Expected a pushed model (a copy of a Trainer model with its provenance.json) in "
            f"{store.roots}. Received: {len(store.records)} records, no pushed model. Run the "
            "pipeline until Evaluator blesses a model."
        )
    others = [
        f
        for f in copies
        if f is not chosen
        and f.artifact["uri"] == chosen.artifact["uri"]
        and _version_of(f, store.push_destinations) is None
    ]
    if _version_of(chosen, store.push_destinations) is None:
        # Chosen by its Pusher artifact: the version folder is the other copy.
        version_copies = [
            f
            for f in copies
            if f.artifact["uri"] == chosen.artifact["uri"]
            and _version_of(f, store.push_destinations) is not None
        ]
        if version_copies:
            return version_copies[-1], chosen
    return chosen, (others[0] if others else None)


def _model_location(eval_run: dict, name: str) -> str:
    locations = eval_run.get("modelLocations")
    return str(locations.get(name, "")) if isinstance(locations, dict) else ""


def _evaluation_of(store: Store, model_serving: str) -> tuple[str, dict] | None:
    """The evaluation whose candidate was ``model_serving`` (newest folder name wins)."""
    matches = [
        (folder, run)
        for folder, run in store.evaluations.items()
        if provenance.same_uri(_model_location(run, "candidate"), model_serving)
    ]
    return sorted(matches)[-1] if matches else None


def _blessing_of(evaluation: str) -> tuple[str, bool | None]:
    """The Evaluator's blessing beside its evaluation (TFX names outputs by key:
    ``.../evaluation/<id>`` locally, ``.../evaluation`` on Kubeflow)."""
    parts = evaluation.rstrip("/").split("/")
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == "evaluation":
            candidate = "/".join(parts[:index] + ["blessing"] + parts[index + 1 :])
            for name in BLESSING_FILES:
                if fileio.exists(posixpath.join(candidate, name)):
                    return candidate, name == "BLESSED"
            return candidate, None
    return "", None


def _node(found: Found | None, uri: str, type_name: str, properties: dict | None = None) -> dict:
    return {
        "artifact_id": None,
        "type": type_name,
        "uri": uri,
        "state": "LIVE",
        "properties": dict(sorted((properties or {}).items())),
        "record": found.location if found else None,
        "producer": None,
    }


def _producer(found: Found, inputs: dict[str, list[dict]]) -> dict:
    orchestrator = found.record["step"].get("orchestrator", {})
    return {
        "execution_id": orchestrator.get("execution_id") or orchestrator.get("task"),
        "node": found.component,
        "type": found.record["step"].get("executor", ""),
        "state": "COMPLETE",
        "pipeline": orchestrator.get("pipeline"),
        "run": orchestrator.get("run_id"),
        "started": found.record["step"]["started"],
        "finished": found.record["step"]["finished"],
        "outputs": {},
        "inputs": inputs,
    }


def _seen(node: dict) -> dict:
    return {"artifact_id": None, "type": node["type"], "uri": node["uri"], "seen_above": True}


def _artifact_tree(store: Store, uri: str, type_name: str, seen: dict[str, dict]) -> dict:
    """An artifact of ours and what made it, from the records; an artifact met again is
    ``seen_above`` (as in ``graph.lineage``), which also ends a loop in hostile records."""
    key = uri.rstrip("/")
    if key in seen:
        return _seen(seen[key])
    found = store.by_artifact(uri)
    if found is None:  # an Importer's artifact, a stock step's output: no record
        node = _node(None, uri, type_name)
        seen[key] = node
        return node
    node = _node(found, uri, found.artifact["type"], found.artifact.get("properties"))
    node["exec_properties"] = found.record.get("exec_properties", {})
    seen[key] = node
    inputs = {
        k: [_artifact_tree(store, item["uri"], item["type"], seen) for item in items]
        for k, items in sorted(found.record.get("inputs", {}).items())
    }
    node["producer"] = _producer(found, inputs)
    return node


def store_lineage(store: Store, pushed_model: str | None = None, with_metrics: bool = True):
    """The lineage of a pushed model from records: ``{"summary", "tree", "pushed"}``.

    ``tree`` has the shape of ``graph.lineage`` (``format.format_lineage`` prints both), with
    ``artifact_id`` None and a ``record`` field naming each record read.

    Raises:
        LookupError: see ``find_pushed``.
    """
    pushed, pusher_copy = find_pushed(store, pushed_model)
    trained_uri = pushed.artifact["uri"]
    trained_serving = pushed.produced_at
    seen: dict[str, dict] = {}
    trained = _artifact_tree(store, trained_uri, "Model", seen)
    pusher_inputs: dict[str, list[dict]] = {"model": [trained]}
    evaluation_node = None
    evaluation = _evaluation_of(store, trained_serving)
    blessing_info: dict = {}
    if evaluation is not None:
        folder, run = evaluation
        evaluation_node = _node(None, folder, "ModelEvaluation")
        if with_metrics:
            from backbone_regularizer.pipeline.lineage.graph import evaluation_metrics

            try:
                evaluation_node["metrics"] = evaluation_metrics(folder)
            except Exception as err:  # a foreign-format evaluation: say so, go on
                evaluation_node["metrics_error"] = f"{type(err).__name__}: {err}"
        blessing_uri, blessed = _blessing_of(folder)
        baseline = _model_location(run, "baseline")
        evaluator_inputs = {"model": [_seen(trained)]}
        if baseline:
            evaluator_inputs["baseline_model"] = [
                _artifact_tree(store, posixpath.dirname(baseline.rstrip("/")), "Model", seen)
            ]
        blessing_node = _node(None, blessing_uri, "ModelBlessing", {"blessed": int(bool(blessed))})
        blessing_node["producer"] = {
            "execution_id": None,
            "node": "Evaluator",
            "type": "tfx.components.evaluator.executor.Executor (no record: TFMA's files)",
            "state": "COMPLETE",
            "pipeline": None,
            "run": None,
            "outputs": {"evaluation": [evaluation_node]},
            "inputs": evaluator_inputs,
        }
        pusher_inputs["model_blessing"] = [blessing_node]
        blessing_info = {"uri": blessing_uri, "blessed": blessed, "evaluation": folder}
    version = posixpath.basename(pushed.location.rstrip("/"))
    is_version = _version_of(pushed, store.push_destinations) is not None
    root = _node(
        pushed,
        pusher_copy.location if pusher_copy else pushed.location,
        "PushedModel",
        {"pushed": 1, "pushed_destination": pushed.location if is_version else None}
        | ({"pushed_version": version} if is_version else {}),
    )
    root["producer"] = {
        "execution_id": None,
        "node": "Pusher",
        "type": "tfx.components.pusher.executor.Executor (no record: copies the model's)",
        "state": "COMPLETE",
        "pipeline": None,
        "run": None,
        "outputs": {},
        "inputs": pusher_inputs,
    }
    tree = root
    return {
        "summary": _summary(store, root, trained, evaluation_node, blessing_info),
        "tree": tree,
    }


def _first(producer: dict | None, key: str) -> dict | None:
    items = ((producer or {}).get("inputs") or {}).get(key) or []
    return items[0] if items else None


def _json_or_text(value):
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


def _span(examples: dict):
    """The Examples' span: a property locally; on Kubeflow an exec property only (a KFP
    number: 1.0)."""
    span = examples["properties"].get("span", examples.get("exec_properties", {}).get("span"))
    return int(span) if isinstance(span, float) and span.is_integer() else span


def _summary(store, root, trained, evaluation_node, blessing_info) -> dict:
    """The keys of ``facts.lineage_summary`` that records can answer."""
    props = root["properties"]
    summary: dict = {
        "pushed_model": {
            "uri": root["uri"],
            "record": root["record"],
            "pushed": True,
            "pushed_destination": props.get("pushed_destination"),
            "pushed_version": props.get("pushed_version"),
        }
    }
    if blessing_info:
        summary["blessing"] = {"uri": blessing_info["uri"], "blessed": blessing_info["blessed"]}
        summary["evaluation"] = {
            k: v for k, v in evaluation_node.items() if k in ("uri", "metrics", "metrics_error")
        }
    trainer = trained.get("producer")
    if trainer:
        model_run = store.original(
            next(
                (
                    f.artifact["uri"]
                    for f in store.records
                    if f.component == TRAINER
                    and f.artifact["key"] == "model_run"
                    and f.record["step"]["started"] == trainer["started"]
                ),
                "",
            )
        )
        summary["trainer"] = {
            "node": trainer["node"],
            "run": trainer["run"],
            "started": trainer["started"],
            "finished": trainer["finished"],
            "model": trained["uri"],
            "model_run": model_run.artifact["uri"] if model_run else None,
        }
        examples = _first(trainer, "examples")
        if examples:
            eprops = examples["properties"]
            producer = examples.get("producer") or {}
            summary["examples"] = {
                "uri": examples["uri"],
                "node": producer.get("node"),
                "run": producer.get("run"),
                "span": _span(examples),
                "split_counts": {
                    k[len("count_") :]: v for k, v in eprops.items() if k.startswith("count_")
                },
                "label_map": _json_or_text(eprops.get("label_map")),
                "spans": _json_or_text(eprops.get("spans")),
                "label_source": eprops.get("label_source"),
            }
        regularized = _first(trainer, "base_model")
        if regularized:
            producer = regularized.get("producer") or {}
            summary["regularizer"] = {
                "uri": regularized["uri"],
                "node": producer.get("node"),
                "execution_id": producer.get("execution_id"),
                "run": producer.get("run"),
                "properties": regularized["properties"],
            }
            backbone = _first(producer, "backbone")
            if backbone:
                loader = backbone.get("producer")
                bprops = backbone["properties"]
                summary["backbone"] = {
                    "uri": backbone["uri"],
                    "node": loader["node"] if loader else None,
                    "imported": loader is None,
                } | {
                    k: bprops[k]
                    for k in ("source", "weights_sha256", "parameter_count", "architecture")
                    if k in bprops
                }
    return summary


# ---------------------------------------------------------------------------------------------
# Verification


def _chain_artifacts(store: Store, pushed: Found) -> list[tuple[str, dict, Found | None]]:
    """(folder to check, the artifact entry the pushed model's chain holds, the record found
    at that folder): the pushed copy itself, the trained model, then the chain."""
    items = [(pushed.location, pushed.artifact, pushed)]
    trained = pushed.artifact
    items.append(
        (
            provenance.record_folder(trained["uri"], trained.get("folder", "")),
            trained,
            store.original(trained["uri"], trained.get("folder", "")),
        )
    )
    for record in pushed.record.get("chain", []):
        artifact = record["artifact"]
        folder = provenance.record_folder(artifact["uri"], artifact.get("folder", ""))
        items.append(
            (folder, artifact, store.original(artifact["uri"], artifact.get("folder", "")))
        )
    return items


def verify_chain(store: Store, pushed_model: str | None = None, workers: int = 2) -> dict:
    """Re-hash every artifact on a pushed model's chain against the digests in its record.

    The pushed copy is checked against its own record; every upstream artifact against the
    copy of its record in the pushed model's chain, and its own ``provenance.json`` (when it
    is still there) must say the same.

    Returns:
        ``{"pushed_model", "checked": [{"uri", "component", "files"}], "problems": [...],
        "unverified": [...]}``; each problem names the artifact, the file, what the record
        says and what is there.
    """
    pushed, pusher_copy = find_pushed(store, pushed_model)
    targets = _chain_artifacts(store, pushed)
    if pusher_copy is not None:
        targets.insert(1, (pusher_copy.location, pushed.artifact, pusher_copy))
    checked, problems = [], []
    for folder, artifact, found in targets:
        component = _component_of(pushed, artifact)
        files = artifact["files"]
        for problem in provenance.verify_files(folder, files, workers):
            problems.append({"artifact": folder, "component": component} | problem)
        if found is None and folder != pushed.location:
            problems.append(
                {
                    "artifact": folder,
                    "component": component,
                    "file": provenance.record_uri(folder),
                    "problem": "record missing",
                    "expected": artifact["digest"],
                    "received": None,
                }
            )
        elif found is not None and found.artifact["digest"] != artifact["digest"]:
            problems.append(
                {
                    "artifact": folder,
                    "component": component,
                    "file": provenance.record_uri(folder),
                    "problem": "record differs from the copy in the pushed model's chain",
                    "expected": artifact["digest"],
                    "received": found.artifact["digest"],
                }
            )
        checked.append({"uri": folder, "component": component, "files": len(files)})
    return {
        "pushed_model": pushed.location,
        "checked": checked,
        "problems": problems,
        "unverified": [
            "Evaluator outputs (evaluation, blessing) and Pusher metadata: stock TFX steps "
            "write no record, so there is no digest to check them against"
        ],
    }


def _component_of(pushed: Found, artifact: dict) -> str:
    if artifact is pushed.artifact:
        return TRAINER
    for record in pushed.record.get("chain", []):
        if record["artifact"] is artifact:
            return record["step"]["component"]
    return "?"


def format_verification(result: dict) -> str:
    lines = []
    files = sum(item["files"] for item in result["checked"])
    for item in result["checked"]:
        lines.append(f"checked {item['component']}: {item['uri']} ({item['files']} files)")
    if result["problems"]:
        lines.append(f"FAILED: {len(result['problems'])} problem(s) in {files} files:")
        for problem in result["problems"]:
            lines.append(
                f"  {problem['component']}: {problem['problem']}: {problem['file']} "
                f"(expected {problem['expected']}, found {problem['received']})"
            )
    else:
        lines.append(f"verified: {len(result['checked'])} artifacts, {files} files, all match")
    for note in result["unverified"]:
        lines.append(f"not verifiable: {note}")
    return "\n".join(lines)


def local_log_folder(root: str) -> str | None:
    """The root itself when local (the log goes beside the run), else None."""
    return None if "://" in root else os.path.abspath(root)


def store_of_pushed(location: str) -> Store:
    """A ``Store`` holding a pushed model's record and those of its chain, read where the
    chain says they are (no walk): for ``--verify`` when ML Metadata named the model.

    Raises:
        FileNotFoundError: no record in ``location``.
        provenance.RecordError: a malformed record.
    """
    path = provenance.record_uri(location)
    if not fileio.exists(path):
        raise FileNotFoundError(
            f"Expected the pushed model to hold {provenance.RECORD_FILE}. Received: no file at "
            f"{path!r} (pushed before provenance records existed?)"
        )
    pushed = Found(location.rstrip("/"), provenance.read_record(path))
    store = Store(roots=[], records=[pushed])
    store.push_destinations = [posixpath.dirname(location.rstrip("/"))]
    artifacts = [pushed.artifact] + [r["artifact"] for r in pushed.record.get("chain", [])]
    for artifact in artifacts:
        folder = provenance.record_folder(artifact["uri"], artifact.get("folder", ""))
        if fileio.exists(provenance.record_uri(folder)):
            store.records.append(
                Found(folder, provenance.read_record(provenance.record_uri(folder)))
            )
    return store

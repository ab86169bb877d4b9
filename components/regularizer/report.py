"""The regularization report: what was attached, what was skipped and why, what was verified."""

from __future__ import annotations

import dataclasses
import json
import platform
from collections import Counter
from importlib import metadata

import numpy as np


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "keras": _version("keras"),
        "tensorflow": _version("tensorflow"),
        "numpy": _version("numpy"),
        "backbone_regularizer": _version("backbone-regularizer"),
    }


@dataclasses.dataclass
class Baseline:
    """The input model's fingerprint, taken before anything is changed."""

    weights_sha256: str
    probe_batch: object  # the model's input structure (array, list or dict of arrays)
    probe_outputs: list[np.ndarray]
    probe_sha256: str
    # L2-SP only: {weight key: w0}, a copy of the weights the checksum covers.
    anchors: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RegularizationReport:
    """JSON-serializable record of one regularization; ``baseline`` stays in memory only."""

    spec: dict
    regularizer: dict
    regularizer_summary: str
    model: dict
    regularized: list[dict]
    skipped: list[dict]
    preexisting: list[dict]
    frozen_layers: list[str]
    baseline: Baseline
    # Structural keys of every layer the plan keeps frozen (this run's and the source's own);
    # in memory only, for check 1 (``frozen_layers`` lists this run's by path).
    frozen_keys: list[str] = dataclasses.field(default_factory=list)
    penalty: dict = dataclasses.field(default_factory=dict)
    validation: dict = dataclasses.field(default_factory=dict)
    # How the file was written: {"format": "keras" | "regularized-envelope", "why": [...]}
    file: dict = dataclasses.field(default_factory=dict)
    versions: dict = dataclasses.field(default_factory=dict)  # filled when written
    timings: dict = dataclasses.field(default_factory=dict)

    @property
    def counts(self) -> dict:
        kinds = sorted({w["kind"] for w in self.regularized + self.skipped})
        done = Counter(w["kind"] for w in self.regularized)
        missed = Counter(w["kind"] for w in self.skipped)
        carried = Counter(w["carried_by"] for w in self.regularized if w.get("carried_by"))
        return {
            "regularized": len(self.regularized),
            "regularized_trainable": sum(w["trainable"] for w in self.regularized),
            "regularized_frozen": sum(not w["trainable"] for w in self.regularized),
            "carried_by": dict(carried),
            "skipped": len(self.skipped),
            "frozen_layers": len(self.frozen_layers),
            "by_kind": {k: {"regularized": done[k], "skipped": missed[k]} for k in kinds},
        }

    def record_validation(
        self, in_memory, reloaded, safe_mode: bool, carried: dict[str, str] | None = None
    ) -> None:
        """Store the outcome of ``verify`` on the model in memory and on the reloaded file.

        ``carried``: for each weight key, what restored its penalty when the file was reloaded:
        ``"layer config"`` (the layer's own config) or ``"plan"`` (only the saved plan).
        """
        per_weight = in_memory.penalty["per_weight"]
        for entry in self.regularized:
            entry["penalty"] = per_weight[entry["key"]]
            if carried is not None:
                entry["carried_by"] = carried.get(entry["key"])
        self.penalty = {k: v for k, v in in_memory.penalty.items() if k != "per_weight"}
        self.validation = {
            "passed": True,
            "in_memory": in_memory.checks,
            "reloaded": reloaded.checks,
            "source_loaded_with_safe_mode": safe_mode,
        }

    @property
    def passed(self) -> bool:
        return bool(self.validation.get("passed"))

    def to_dict(self) -> dict:
        return {
            "spec": self.spec,
            "regularizer": self.regularizer,
            "regularizer_summary": self.regularizer_summary,
            "model": self.model,
            "counts": self.counts,
            "regularized": self.regularized,
            "skipped": self.skipped,
            "preexisting": self.preexisting,
            "frozen_layers": self.frozen_layers,
            "checksums": {
                "weights_sha256": self.baseline.weights_sha256,
                "probe_outputs_sha256": self.baseline.probe_sha256,
            },
            "penalty": self.penalty,
            "validation": self.validation,
            "file": self.file,
            "versions": self.versions,
            "timings": self.timings,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

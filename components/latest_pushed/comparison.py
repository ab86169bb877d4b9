"""Whether a candidate may be compared with the production model: their label maps decide.

An Evaluator comparing two classifiers assumes output ``i`` means the same class in both. A
candidate trained on a vocabulary that shifted (a span without one class, relabelled
``0..N-1``) scored production 0.000 on shifted labels and "won". So the comparison runs only
when both label maps are equal; anything else stops the run before the Evaluator and the
Pusher, naming both maps, except a vocabulary that only grew (production's classes at the same
indices, new ones appended) with ``grow_labels``: that candidate has a new, bigger head, and is
compared with itself (absolute thresholds only), as on a first run, which the summary says.

Pure logic: ``LatestPushedModel`` (component.py) reads the two ``label_map.json`` files and
calls ``decide``.

>>> decide({"cat": 0, "dog": 1}, "/serving/17", {"cat": 0, "dog": 1}, grow=False).compares
True
"""

from __future__ import annotations

import dataclasses

from backbone_regularizer.components.image_ingestion.images import label_map_to_json as _json
from backbone_regularizer.components.image_ingestion.labels import LABEL_MAP_FILE, names

PRODUCTION = "production"
FIRST_RUN = "none: first run (nothing pushed yet); the candidate is its own baseline"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The decision.

    Attributes:
        compares: the baseline is the production model (else the candidate itself).
        reason: one line for the run summary.
        label_map: the baseline's label map (production's when comparing).
    """

    compares: bool
    reason: str
    label_map: dict[str, int] | None


def decide(
    candidate: dict[str, int] | None,
    production_path: str | None,
    production: dict[str, int] | None,
    grow: bool,
) -> Comparison:
    """Compare with production, skip the comparison (first run, grown vocabulary) or refuse.

    Args:
        candidate: the candidate's label map (``label_map.json`` beside its SavedModel).
        production_path: the newest pushed version, or None before the first push.
        production: that version's label map, or None when it stores none.
        grow: the config allows growing the vocabulary (``grow_labels``).

    Returns:
        A ``Comparison``.

    Raises:
        ValueError: a model without a label map (after the first push), or label maps that
            differ (other than by growth with ``grow``); the message names both maps.
    """
    if production_path is None:
        return Comparison(False, FIRST_RUN, candidate)
    if candidate is None:
        raise ValueError(
            f"Expected the candidate model to store its label map ({LABEL_MAP_FILE} beside "
            "saved_model.pb, written by the pipeline's Trainer) to compare it with the "
            f"production model {production_path}. Received: none"
        )
    if production is None:
        raise ValueError(
            f"Expected the production model {production_path} to store its label map "
            f"({LABEL_MAP_FILE}), to check that its outputs mean the candidate's classes "
            f"{names(candidate)}. Received: no {LABEL_MAP_FILE} (pushed before label maps were "
            f"stored?). If you know its classes, write them there as JSON "
            f"(class name -> index), e.g. {_json(candidate)}."
        )
    if production == candidate:
        return Comparison(
            True, f"{PRODUCTION} (same label map, {len(candidate)} classes)", production
        )
    old, new = names(production), names(candidate)
    if grow and new[: len(old)] == old:
        added = new[len(old) :]
        return Comparison(
            False,
            f"none: the label vocabulary grew by {added} (grow_labels); a new head with "
            f"{len(new)} outputs was trained, compared with itself (absolute thresholds only)",
            candidate,
        )
    hint = (
        " With grow_labels only appending classes is allowed."
        if grow
        else " Set the config's `labels` to the production model's classes (in that order),"
        " or grow_labels: true when classes were only added."
    )
    raise ValueError(
        "Expected the candidate's label map to equal the production model's, so that their "
        f"outputs mean the same classes. Received: candidate {_json(candidate)}, production "
        f"({production_path}) {_json(production)}.{hint}"
    )

"""User concepts: detectors an analyst trains from a handful of labelled shots (issue 10).

The index already stores every shot's pooled backbone features (``features`` table), so a
new concept needs no video decoding and no network: a logistic-regression detector is
fitted on the labelled shots' features (and on example images run through the model), and
every shot is re-scored with one matrix-vector product. The concept and its scores are
stored like a model concept (``concepts.source = 'user'``), so search, the web UI and the
exports use it at once. Labels, dates, the detector and the model whose features it was
trained on are kept in ``concepts.info`` (JSON).

Negatives: when fewer than :data:`NEGATIVES_PER_POSITIVE` × positives (at least
:data:`MIN_NEGATIVES`) are given, random unlabelled shots of the index are added as
negatives up to that number. A random shot almost never shows a new, specific concept;
the few that do are label noise the classifier tolerates, and labelling them later
(``refine``) corrects it. Classes are balanced by weighting (``class_weight="balanced"``).

Scores: with at least :data:`MIN_CALIBRATION` positives and negatives (sampled ones included),
the detector's log-odds are calibrated by Platt scaling fitted on 3-fold cross-validated
predictions, and folded into its weights (``sigmoid(a·z + b)`` of a linear ``z`` is linear), so
a score estimates the chance that a shot like the labelled ones shows the concept, at the mix of
labelled and sampled shots it was trained on. With fewer labels the class-balanced score is kept
as it is: 0.5 is the boundary between the two weighted classes, not a probability
(``info["calibrated"]`` says which).

Example::

    from vidconcept import Index
    from vidconcept.concepts import add_concept, refine_concept, suggest
    index = Index("vidconcept-index")
    add_concept(index, "forest", positive=[12, 40, 41], negative=[7])
    index.search("forest AND NOT person")
    suggest(index, "forest")["next"]          # shots worth labelling next
    refine_concept(index, "forest", positive=[88], negative=[90, 91])
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import ModelError, UsageError, unknown
from .index.accounts import Accounts, local_actor
from .index.store import Store, now_iso
from .index.user_concepts import (  # noqa: F401 (the core; re-exported for the public API)
    LR_C,
    MIN_CALIBRATION,
    MIN_NEGATIVES,
    NEGATIVES_PER_POSITIVE,
    SCAN_BATCH,
    SOURCE,
    calibrate_detector,
    decode_vector,
    Detector,
    encode_vector,
    fit_detector,
    follow_labels,
    Relabel,
    rescore_store,
    retrain_store,
    sample_negatives,
    score_all,
    train_detector,
    user_detectors,
)
from .search.query import OPERATORS

if TYPE_CHECKING:
    from .api import Index

log = logging.getLogger(__name__)

ShotId = int

#: Letters, digits, ``_`` and ``-``: a name the query language reads as one concept token.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Shots proposed by :func:`suggest` by default (half most uncertain, half top-scored).
SUGGEST_COUNT = 10
INFO_VERSION = 1


class ConceptExistsError(UsageError):
    """A new concept's name is already taken (HTTP 409)."""


class ModelConceptError(UsageError):
    """A model concept named where only a user concept can be changed (HTTP 409)."""


class UnknownShotError(UsageError):
    """Labels name shots the index does not have."""


@dataclass
class UserConcept:
    """A user concept as stored: its row of ``concepts`` with ``info`` decoded."""

    id: int
    name: str
    created_at: str
    info: dict = field(default_factory=dict)

    @property
    def positive(self) -> list[ShotId]:
        return self.info.get("positive", [])

    @property
    def negative(self) -> list[ShotId]:
        return self.info.get("negative", [])

    @property
    def detector(self) -> Detector:
        return Detector.from_json(self.info["detector"])

    def to_dict(self) -> dict:
        """Public view: labels, dates, model, counts (not the detector weights)."""
        keep = ("positive", "negative", "images", "sampled_negatives", "updated_at", "rounds", "model", "scored",
                "calibrated", "timing", "lost_labels")
        return {"name": self.name, "source": SOURCE, "created_at": self.created_at,
                **{k: self.info[k] for k in keep if k in self.info}}


# ---- the core: arrays in, arrays out ------------------------------------------------------------


def suggest_from_scores(ids: np.ndarray, scores: np.ndarray, labelled: Iterable[ShotId],
                        count: int = SUGGEST_COUNT) -> dict[str, list[ShotId]]:
    """Unlabelled shots worth labelling: the most uncertain (score nearest 0.5: uncertainty
    sampling, Lewis & Gale 1994) and the top-scored (they decide the first results page).

    ``next`` interleaves the two lists (uncertain first), ``count`` shots without repeats.
    """
    free = ~np.isin(ids, np.fromiter(labelled, np.int64))
    ids, scores = ids[free], scores[free]
    uncertain = ids[np.argsort(np.abs(scores - 0.5), kind="stable")[:count]].tolist()
    top = ids[np.argsort(-scores, kind="stable")[:count]].tolist()
    merged = dict.fromkeys(s for pair in zip(uncertain, top) for s in pair)  # ordered, no repeats
    return {"next": [int(s) for s in list(merged)[:count]], "uncertain": uncertain, "top": top}


# ---- names and labels ------------------------------------------------------------------------------
def check_name(name: str) -> str:
    """A valid new-concept name, or :class:`UsageError` saying what is allowed."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise UsageError(f"concept name {name!r} is not allowed: use 1-64 letters, digits, '_' or '-' "
                         "so that queries can name it")
    if name.upper() in OPERATORS or re.fullmatch(r"\d+", name):
        raise UsageError(f"concept name {name!r} would read as a query operator or a weight; choose another")
    return name


def _labels(positive: Sequence[ShotId], negative: Sequence[ShotId]) -> tuple[list[int], list[int]]:
    try:
        pos, neg = [int(s) for s in positive], [int(s) for s in negative]
    except (TypeError, ValueError) as exc:
        raise UsageError(f"shot ids must be whole numbers: {exc}") from exc
    both = sorted(set(pos) & set(neg))
    if both:
        raise UsageError(f"shots {both} are labelled both positive and negative; label each shot once")
    return sorted(set(pos)), sorted(set(neg))


def _check_shots(store: Store, ids: Sequence[ShotId]) -> None:
    known = store.shots(ids)
    missing = [i for i in ids if i not in known]
    if missing:
        raise UnknownShotError(f"no shots with ids {missing[:10]}{' …' if len(missing) > 10 else ''} in "
                               f"{store.root} (see `vidconcept search … --json` for shot ids)")


# ---- the index side -------------------------------------------------------------------------------
def get_concept(index: Index, name: str) -> UserConcept:
    """The user concept ``name``; a model concept or an unknown name raises."""
    row = index.store.find_concept(name)
    if row is None:
        raise unknown("concept", name, [c["name"] for c in index.store.concepts() if c["source"] == SOURCE])
    if row["source"] != SOURCE:
        raise ModelConceptError(f"{row['name']!r} is a concept of the model, not a user concept: only user "
                                "concepts (made with `vidconcept concept add`) can be refined, suggested for "
                                "or removed")
    return UserConcept(row["id"], row["name"], row["created_at"], json.loads(row["info"] or "{}"))


def list_concepts(index: Index) -> list[UserConcept]:
    """Every user concept of the index."""
    return [get_concept(index, c["name"]) for c in index.store.concepts() if c["source"] == SOURCE]


def add_concept(index: Index, name: str, positive: Sequence[ShotId], negative: Sequence[ShotId] = (),
                images: Sequence = (), wait: float = 0.0, actor: str | None = None) -> UserConcept:
    """Train a new concept from labelled shots (and example images, as positives) and score every shot.

    Args:
        index: an open :class:`~vidconcept.api.Index`.
        name: the new concept; letters, digits, ``_``, ``-``; must not clash (case-insensitively)
            with any concept of the index.
        positive, negative: shot ids showing / not showing the concept.
        images: example image paths or arrays showing the concept, run through the index's model.
        wait: seconds to wait for another writer's lock.
        actor: who, for the audit trail (default: the local user).
    """
    check_name(name)
    _refuse_taken(index.store, name)
    pos, neg = _labels(positive, negative)
    _check_shots(index.store, pos + neg)
    image_feats = _image_features(index, images)
    if not pos and not len(image_feats):
        raise UsageError(f"concept {name!r} needs at least one positive shot or example image")
    now = now_iso()
    info = {"version": INFO_VERSION, "positive": pos, "negative": neg, "rounds": 1, "updated_at": now,
            "images": [str(i) if not isinstance(i, np.ndarray) else "<array>" for i in images],
            "image_features": [encode_vector(f) for f in image_feats], "model": index.store.get_meta("model")}
    concept = _train_and_store(index, name, info, created_at=now, wait=wait, new=True)
    _record(index, actor, "concept-add", concept.name, None, now,
            {"positive": pos, "negative": neg, "images": len(image_feats)})
    return concept


def _refuse_taken(store: Store, name: str) -> None:
    row = store.find_concept(name)
    if row is not None:
        kind = "a user concept" if row["source"] == SOURCE else "a concept of the model"
        raise ConceptExistsError(f"{row['name']!r} is already {kind} of this index: choose another name"
                                 + (", or `vidconcept concept refine` it" if row["source"] == SOURCE else ""))


def refine_concept(index: Index, name: str, positive: Sequence[ShotId] = (), negative: Sequence[ShotId] = (),
                   wait: float = 0.0, actor: str | None = None) -> UserConcept:
    """Add labels and retrain. A shot labelled again takes its new label (a thumbs down undoes a thumbs up)."""
    concept = get_concept(index, name)
    pos, neg = _labels(positive, negative)
    if not pos and not neg:
        raise UsageError("give at least one --positive or --negative shot to refine with")
    _check_shots(index.store, pos + neg)
    info = dict(concept.info)
    info["positive"] = sorted((set(concept.positive) - set(neg)) | set(pos))
    info["negative"] = sorted((set(concept.negative) - set(pos)) | set(neg))
    info["rounds"] = info.get("rounds", 1) + 1
    info["updated_at"] = now_iso()
    refined = _train_and_store(index, concept.name, info, created_at=concept.created_at, wait=wait)
    _record(index, actor, "concept-refine", concept.name, concept.info, concept.created_at,
            {"positive": pos, "negative": neg})
    return refined


def remove_concept(index: Index, name: str, wait: float = 0.0, actor: str | None = None) -> None:
    """Delete a user concept and its scores (:func:`undo` brings it back)."""
    from .index.lock import write_lock

    from .index import columns

    concept = get_concept(index, name)
    with write_lock(index.root, wait):
        before = index.store.scores_generation()
        index.store.delete_concept(concept.id)
        columns.drop_concept(index.store, before, concept.id)
    _record(index, actor, "concept-remove", concept.name, concept.info, concept.created_at)


def undo(index: Index, name: str, wait: float = 0.0, actor: str | None = None) -> UserConcept | None:
    """Put a user concept back as it was before its last change in the audit trail: an added
    concept is removed, a refined one gets its earlier labels and detector back (every shot is
    re-scored with it), a removed one comes back. An undo is a change too: undo it to redo.
    Returns the concept as it is now (``None`` when the undo removed it)."""
    change = next(index.accounts.audit(limit=1, target=name, action_prefix="concept-"), None)
    if change is None:
        raise UsageError(f"concept {name!r} has no recorded change to undo (see `vidconcept audit`)")
    before, created_at = change.detail.get("_before"), change.detail.get("_created_at")
    current = index.store.find_concept(name)
    now_info = json.loads(current["info"] or "{}") if current else None
    if before is None:
        if current is not None:
            remove_concept(index, name, wait=wait, actor=_SILENT)
        restored = None
    else:
        restored = _store_detector(index, name, before, created_at or now_iso(), wait)
    _record(index, actor, "concept-undo", name, now_info, current["created_at"] if current else None,
            {"undid": change.id, "action": change.action})
    return restored


def suggest(index: Index, name: str, count: int = SUGGEST_COUNT) -> dict[str, list[ShotId]]:
    """Shots worth labelling next for ``name`` (see :func:`suggest_from_scores`), from its stored scores."""
    if not isinstance(count, int) or not 1 <= count <= 1000:
        raise UsageError(f"count must be a whole number from 1 to 1000, not {count!r}")
    concept = get_concept(index, name)
    ids, scores = index.store.concept_column(concept.id)
    return suggest_from_scores(ids, scores, set(concept.positive) | set(concept.negative), count)


def scores_of(index: Index, name: str, shot_ids: Sequence[ShotId]) -> list[tuple[ShotId, float]]:
    """``(shot id, score)`` of a user concept for the given shots (0 for a shot it did not score)."""
    scores = dict(zip(*index.store.concept_column(get_concept(index, name).id)))
    return [(int(i), float(scores.get(i, 0.0))) for i in shot_ids]


def rescore(index: Index, name: str | None = None, wait: float = 0.0) -> list[str]:
    """Re-score every shot with the stored detectors (after new videos were ingested); no retraining."""
    from .index.lock import write_lock

    names = [get_concept(index, name).name] if name else None
    with write_lock(index.root, wait):
        return rescore_store(index.store, names)


# ---- internals -----------------------------------------------------------------------------------
#: Marks a change that another one records (an undo's removal), so it is not recorded twice.
_SILENT = "\0"


def _record(index: Index, actor: str | None, action: str, name: str, before: dict | None, created_at: str | None,
            detail: dict | None = None) -> None:
    """An audit row for a concept change; ``_before`` (the earlier info, detector included) lets :func:`undo`
    restore it. Keys starting with ``_`` are left out of the audit's public views."""
    if actor != _SILENT:
        Accounts(index.store).record(actor or local_actor(), action, name,
                                     {**(detail or {}), "_before": before, "_created_at": created_at})


def _store_detector(index: Index, name: str, info: dict, created_at: str, wait: float) -> UserConcept:
    """Write a concept with a stored detector (no training): every shot is scored with it."""
    from .index import columns
    from .index.lock import write_lock

    store = index.store
    with write_lock(index.root, wait):
        ids, scores = score_all(store, Detector.from_json(info["detector"]))
        before = store.scores_generation()
        cid = store.write_concept(name, SOURCE, created_at, json.dumps(info), ids, scores)
        columns.replace_concept(store, before, cid, ids, scores)
    return UserConcept(cid, name, created_at, info)


def _train_and_store(index: Index, name: str, info: dict, created_at: str, wait: float,
                     new: bool = False) -> UserConcept:
    from .index import columns
    from .index.lock import write_lock

    store = index.store
    t0 = time.perf_counter()
    with write_lock(index.root, wait):
        if new:  # again under the lock: another writer may have taken the name meanwhile
            _refuse_taken(store, name)
        detector, info = train_detector(store, name, info)
        t1 = time.perf_counter()
        ids, scores = score_all(store, detector)
        t2 = time.perf_counter()
        info |= {"detector": detector.to_json(), "scored": int(len(ids))}
        info["timing"] = {"train_s": round(t1 - t0, 3), "score_s": round(t2 - t1, 3)}
        before = store.scores_generation()
        cid = store.write_concept(name, SOURCE, created_at, json.dumps(info), ids, scores)
        columns.replace_concept(store, before, cid, ids, scores)
        info["timing"]["write_s"] = round(time.perf_counter() - t2, 3)
    log.info("concept %s: %d+/%d- labels, %d shots scored in %.2f s", name, len(info["positive"]),
             len(info["negative"]), len(ids), time.perf_counter() - t0)
    return UserConcept(cid, name, created_at, info)


def _image_features(index: Index, images: Sequence) -> list[np.ndarray]:
    if not len(images):
        return []
    from .images import load_array

    dim = index.store.get_meta("feature_dim")
    model = index.model
    if dim and model.feature_dim != dim:
        raise ModelError(f"the index holds {dim}-d features but model {model.name!r} makes {model.feature_dim}-d "
                         "ones: pass --model with the model the index was built with")
    return list(model.predict([load_array(i) for i in images]).features)


__all__ = ["ConceptExistsError", "Detector", "ModelConceptError", "Relabel", "UnknownShotError", "UserConcept",
           "add_concept", "calibrate_detector", "check_name", "fit_detector", "follow_labels", "get_concept",
           "list_concepts", "refine_concept", "remove_concept", "rescore", "rescore_store", "retrain_store",
           "sample_negatives", "scores_of", "suggest", "suggest_from_scores", "undo"]

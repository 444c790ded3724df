"""User concepts as the index stores them: their detectors, how they are trained from stored labels,
and how shots are scored with them (the core under :mod:`vidconcept.concepts`, the API layer).

A user concept is a row of ``concepts`` with ``source = 'user'``; its ``info`` JSON holds its labels and
its detector (:class:`Detector`, base64 vectors). The ingest scores new shots with :func:`user_detectors`
(and moves labels to a changed file's new shots with :func:`follow_labels`, where present);
:func:`rescore_store` scores every shot again; ``vidconcept upgrade`` retrains them all
(:func:`retrain_store`, where present). The functions take a :class:`~vidconcept.index.store.Store` and
arrays; the caller holds the write lock.
"""
from __future__ import annotations

import base64
import json
import logging
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError, UsageError, VidconceptError
from ..logistic import LR_C, fit_logistic, fit_platt, logistic, sigmoid
from .shot_match import Reshoot, follow
from .store import Store, now_iso

log = logging.getLogger(__name__)

ShotId = int

#: ``concepts.source`` of a user concept.
SOURCE = "user"
MIN_NEGATIVES = 50
#: Positives and negatives a user concept needs before its scores are calibrated (3 folds of ≥ 2).
MIN_CALIBRATION = 6
NEGATIVES_PER_POSITIVE = 4
#: Shots scored per chunk when re-scoring the index (a 40 MB float32 buffer at 1280-d).
SCAN_BATCH = 8192


@dataclass
class Detector:
    """``sigmoid(x @ coef + intercept)`` on L2-normalised features."""

    coef: np.ndarray  # [D] float32
    intercept: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(self.logits(x))

    def to_json(self) -> dict:
        return {"coef": encode_vector(self.coef, np.float32), "intercept": float(self.intercept)}

    @classmethod
    def from_json(cls, data: dict) -> "Detector":
        return cls(decode_vector(data["coef"], np.float32), float(data["intercept"]))


def fit_detector(positive: np.ndarray, negative: np.ndarray, c: float = LR_C) -> Detector:
    """Fit the LR head (:mod:`vidconcept.logistic`), classes balanced, on positive and negative feature rows."""
    if not len(positive):
        raise UsageError("a concept needs at least one positive example")
    if not len(negative):
        raise UsageError("a concept needs at least one negative example (label some, or index more shots)")
    return Detector(*fit_logistic(*_rows(positive, negative), c, balanced=True))


def _rows(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows and boolean labels of positive and negative examples."""
    x = np.concatenate([positive, negative]).astype(np.float32)
    return x, np.arange(len(x)) < len(positive)


def calibrate_detector(detector: Detector, positive: np.ndarray, negative: np.ndarray, c: float = LR_C,
                       seed: int = 0) -> tuple[Detector, bool]:
    """Platt-scale ``detector`` on 3-fold cross-validated log-odds; too few labels: unchanged (``False``).

    The map ``sigmoid(a·z + b)`` folds into the linear detector (``a·coef``, ``a·intercept + b``).
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if min(len(positive), len(negative)) < MIN_CALIBRATION:
        return detector, False
    x, y = _rows(positive, negative)
    folds = StratifiedKFold(3, shuffle=True, random_state=seed)
    z = cross_val_predict(logistic(c, balanced=True), x, y, cv=folds, method="decision_function")
    a, b = fit_platt(z, y)
    return Detector((detector.coef * a).astype(np.float32), detector.intercept * a + b), True


def sample_negatives(ids: np.ndarray, labelled: Iterable[ShotId], positives: int, negatives: int,
                     seed: int = 0) -> np.ndarray:
    """Random unlabelled ids that top the negatives up to ``max(MIN_NEGATIVES, 4 × positives)``."""
    want = max(MIN_NEGATIVES, NEGATIVES_PER_POSITIVE * positives) - negatives
    if want <= 0:
        return np.empty(0, np.int64)
    pool = np.setdiff1d(ids, np.fromiter(labelled, np.int64), assume_unique=False)
    if len(pool) <= want:
        return pool
    return np.sort(np.random.default_rng(seed).choice(pool, want, replace=False))


def user_detectors(store: Store) -> list[tuple[int, Detector]]:
    """``(concept_id, detector)`` of every user concept: ingest scores new shots with them."""
    return [(c["id"], Detector.from_json(json.loads(c["info"])["detector"]))
            for c in store.concepts() if c["source"] == SOURCE]


@dataclass
class Relabel:
    """What :func:`follow_labels` did: labels moved to new shots, and the ones that could not move."""

    moved: int = 0
    lost: list[dict] = field(default_factory=list)


def follow_labels(store: Store, reshoot: Reshoot, video: str) -> Relabel:
    """Move the user concepts' labels on shots a re-ingest removed to the new shot that
    overlaps each most in time (:func:`~vidconcept.index.shot_match.follow`).

    A label no new shot covers, or that would contradict a label already on the new shot,
    is not dropped: it is kept in the concept's ``info["lost_labels"]`` (with the video and
    the old span) and returned, for the ingest summary. The caller holds the write lock and
    runs this in the transaction that replaced the shots.
    """
    out = Relabel()
    if not reshoot.gone:
        return out
    for row in store.concepts():
        if row["source"] != SOURCE:
            continue
        info = json.loads(row["info"] or "{}")
        labelled = {s: "negative" for s in info.get("negative", []) if s in reshoot.gone}
        labelled |= {s: "positive" for s in info.get("positive", []) if s in reshoot.gone}
        if not labelled:
            continue
        moved, lost = _move_labels(info, labelled, follow({s: reshoot.gone[s] for s in labelled}, reshoot.spans))
        now = now_iso()
        lost = [{"concept": row["name"], "shot": s, "label": label, "video": video, "start_s": reshoot.gone[s][0],
                 "end_s": reshoot.gone[s][1], "reason": reason, "at": now} for s, label, reason in lost]
        info["lost_labels"] = info.get("lost_labels", []) + [{k: v for k, v in x.items() if k != "concept"} for x in lost]
        store.db["concepts"].update(row["id"], {"info": json.dumps(info)})
        out.moved += moved
        out.lost += lost
        log.info("concept %s: %d label(s) moved to the re-ingested shots of %s", row["name"], moved, video)
        for x in lost:
            log.warning("concept %s: %s label of shot %d (%s, %.2f-%.2f s) could not follow the changed file: %s; "
                        "kept in the concept's lost_labels (`vidconcept concept show %s`)", x["concept"], x["label"],
                        x["shot"], video, x["start_s"], x["end_s"], x["reason"], x["concept"])
    return out


def _move_labels(info: dict, labelled: dict[int, str], target: dict[int, int | None]) -> tuple[int, list]:
    """Rewrite ``info``'s positive/negative lists; return (moved, [(shot, label, reason)])."""
    pos = set(info.get("positive", [])) - set(labelled)
    neg = set(info.get("negative", [])) - set(labelled)
    incoming: dict[int, list[tuple[int, str]]] = {}
    lost = []
    for shot, label in labelled.items():
        if target[shot] is None:
            lost.append((shot, label, "no shot of the new version covers it"))
        else:
            incoming.setdefault(target[shot], []).append((shot, label))
    moved = 0
    for new, labels in incoming.items():
        kinds = {label for _, label in labels} | ({"positive"} if new in pos else set()) | (
            {"negative"} if new in neg else set())
        if len(kinds) > 1:
            lost += [(shot, label, f"contradicts another label now on shot {new}") for shot, label in labels]
            continue
        (pos if "positive" in kinds else neg).add(new)
        moved += len(labels)
    info["positive"], info["negative"] = sorted(pos), sorted(neg)
    return moved, lost


def rescore_store(store: Store, names: Sequence[str] | None = None) -> list[str]:
    """:func:`vidconcept.concepts.rescore` for a caller that already holds the write lock."""
    from . import columns

    rows = [c for c in store.concepts() if c["source"] == SOURCE and (names is None or c["name"] in names)]
    for row in rows:
        detector = Detector.from_json(json.loads(row["info"])["detector"])
        ids, scores = score_all(store, detector)
        before = store.scores_generation()
        store.replace_concept_scores(row["id"], ids, scores)
        columns.replace_concept(store, before, row["id"], ids, scores)
    return [row["name"] for row in rows]


def retrain_store(store: Store, model=None) -> list[str]:
    """Retrain every user concept from its stored labels on the features the index holds now
    (``vidconcept upgrade`` calls this after swapping in a new model's features, under the
    write lock, in the swap's transaction). Example images given by path are run through
    ``model`` again; ones that cannot be (arrays, unreadable files) are listed in the
    concept's ``info["lost_images"]`` and logged. Returns the names retrained."""
    done = []
    for row in store.concepts():
        if row["source"] != SOURCE:
            continue
        info = _refeature_images(row["name"], json.loads(row["info"] or "{}"), model)
        info["model"] = store.get_meta("model")
        try:
            detector, info = train_detector(store, row["name"], info)
        except UsageError as exc:
            log.warning("concept %s could not be retrained on the new model's features (%s); it keeps its labels "
                        "and has no scores until refined", row["name"], exc)
            info["retrain_error"] = str(exc)
            store.write_concept(row["name"], SOURCE, row["created_at"], json.dumps(info), np.empty(0, np.int64),
                                np.empty(0, np.float32))
            continue
        ids, scores = score_all(store, detector)
        info |= {"detector": detector.to_json(), "scored": int(len(ids))}
        info.pop("retrain_error", None)
        store.write_concept(row["name"], SOURCE, row["created_at"], json.dumps(info), ids, scores)
        done.append(row["name"])
    return done


def _refeature_images(name: str, info: dict, model) -> dict:
    """Example images' features from ``model`` (the old ones belong to the old model)."""
    paths, kept, feats = info.get("images", []), [], []
    if not info.get("image_features"):
        return info
    from ..images import load_array

    for path in paths:
        try:
            if model is None or path == "<array>":
                raise VidconceptError("not stored as a file")
            feats.append(encode_vector(model.predict([load_array(path)]).features[0]))
            kept.append(path)
        except (VidconceptError, OSError) as exc:
            log.warning("concept %s: example image %s cannot be run through the new model (%s); it no longer "
                        "trains the concept (listed in lost_images)", name, path, exc)
            info.setdefault("lost_images", []).append(path)
    return {**info, "images": kept, "image_features": feats}


def train_detector(store: Store, name: str, info: dict) -> tuple[Detector, dict]:
    pos, neg = list(info["positive"]), list(info["negative"])
    pos_ids, pos_x = store.features_of(pos)
    neg_ids, neg_x = store.features_of(neg)
    gone = sorted(set(pos + neg) - set(pos_ids.tolist()) - set(neg_ids.tolist()))
    if gone:  # a pruned video (a changed one's labels follow its shots: follow_labels)
        log.warning("concept %s: labelled shots %s are no longer in the index; their labels are kept in the "
                    "concept's lost_labels, not used for training", name, gone)
        info["lost_labels"] = info.get("lost_labels", []) + [
            {"shot": s, "label": "positive" if s in pos else "negative", "reason": "shot no longer in the index",
             "at": now_iso()} for s in gone]
        info["positive"] = [s for s in pos if s not in gone]
        info["negative"] = [s for s in neg if s not in gone]
    images = [decode_vector(f) for f in info.get("image_features", [])]
    if images:
        if pos_x.shape[1] not in (0, images[0].shape[0]):
            raise ModelError("example image features do not match the index's features")
        pos_x = np.concatenate([pos_x.reshape(-1, images[0].shape[0]), np.stack(images)])
    extra = sample_negatives(store.shot_ids(), set(pos) | set(neg), len(pos_x), len(neg_x),
                             seed=zlib.crc32(name.encode()))
    _, extra_x = store.features_of(extra.tolist())
    info["sampled_negatives"] = int(len(extra_x))
    negatives = np.concatenate([neg_x, extra_x]) if len(extra_x) else neg_x
    detector, info["calibrated"] = calibrate_detector(fit_detector(pos_x, negatives), pos_x, negatives)
    return detector, info


def score_all(store: Store, detector: Detector) -> tuple[np.ndarray, np.ndarray]:
    """Every shot's score: float16 chunks converted into one reused float32 buffer, one matvec each."""
    ids, scores = [], []
    buffer = None
    for chunk_ids, x16 in store.scan_features(SCAN_BATCH):
        if buffer is None:
            buffer = np.empty((SCAN_BATCH, x16.shape[1]), np.float32)
        x = buffer[: len(x16)]
        np.copyto(x, x16)
        ids.append(chunk_ids)
        scores.append(detector.predict(x))
    if not ids:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(ids), np.concatenate(scores)


def encode_vector(x: np.ndarray, dtype=np.float16) -> str:
    """Vectors in JSON: float16 features as the index stores them, float32 detector weights."""
    return base64.b64encode(np.asarray(x, dtype).tobytes()).decode("ascii")


def decode_vector(s: str, dtype=np.float16) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype).astype(np.float32)

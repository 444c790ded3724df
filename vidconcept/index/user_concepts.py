"""User concepts as the index stores them: their linear detectors, and scoring shots with them.

A user concept is a row of ``concepts`` with ``source = 'user'``; its ``info`` JSON holds the
detector (:class:`Detector`, base64 vectors) next to its labels. The ingest scores new shots with
:func:`user_detectors`; :func:`rescore_store` scores every shot again. Training them from labelled
shots is :mod:`vidconcept.concepts` (the API layer).
"""
from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .store import Store

#: ``concepts.source`` of a user concept.
SOURCE = "user"
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
        return (1.0 / (1.0 + np.exp(-np.clip(self.logits(x), -60, 60)))).astype(np.float32)

    def to_json(self) -> dict:
        return {"coef": encode_vector(self.coef, np.float32), "intercept": float(self.intercept)}

    @classmethod
    def from_json(cls, data: dict) -> "Detector":
        return cls(decode_vector(data["coef"], np.float32), float(data["intercept"]))


def user_detectors(store: Store) -> list[tuple[int, Detector]]:
    """``(concept_id, detector)`` of every user concept: ingest scores new shots with them."""
    return [(c["id"], Detector.from_json(json.loads(c["info"])["detector"]))
            for c in store.concepts() if c["source"] == SOURCE]


def rescore_store(store: Store, names: Sequence[str] | None = None) -> list[str]:
    """:func:`vidconcept.concepts.rescore` for a caller that already holds the write lock."""
    rows = [c for c in store.concepts() if c["source"] == SOURCE and (names is None or c["name"] in names)]
    for row in rows:
        detector = Detector.from_json(json.loads(row["info"])["detector"])
        store.replace_concept_scores(row["id"], *score_all(store, detector))
    return [row["name"] for row in rows]


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

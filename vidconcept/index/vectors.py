"""Per-shot feature vectors in FAISS, keyed by shot id.

The database's ``features`` table is the source of truth. The FAISS file beside it
is a cache for fast search: it is written atomically (temp file + rename) with a
digest of the feature table, and on open a missing, stale or corrupt file is
rebuilt from the database.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from ..errors import IndexError_
from .store import Store

log = logging.getLogger(__name__)

FAISS_NAME = "vectors.faiss"
DIGEST_NAME = "vectors.json"


def _faiss():
    import faiss  # imported lazily: loading it costs ~0.3 s

    return faiss


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so inner product is cosine similarity."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class VectorIndex:
    """Cosine-similarity search over shot features (exact, inner product on unit vectors)."""

    def __init__(self, dim: int):
        faiss = _faiss()
        self.dim = dim
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(normalise(vectors), np.asarray(ids, dtype=np.int64))

    def remove(self, ids) -> None:
        if len(ids):
            self.index.remove_ids(np.asarray(list(ids), dtype=np.int64))

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(similarities, ids)`` of the ``k`` nearest shots to each query row (id -1 pads)."""
        k = max(1, min(k, self.ntotal))
        return self.index.search(normalise(np.atleast_2d(vectors)), k)

    def save(self, path: Path, digest: dict) -> None:
        faiss = _faiss()
        tmp = path.with_suffix(".tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)
        _write_json_atomic(path.with_name(DIGEST_NAME), digest)

    @classmethod
    def read(cls, path: Path) -> "VectorIndex":
        faiss = _faiss()
        index = faiss.read_index(str(path))
        obj = cls.__new__(cls)
        obj.index, obj.dim = index, index.d
        return obj

    @classmethod
    def build(cls, store: Store, dim: int) -> "VectorIndex":
        obj = cls(dim)
        for ids, mat in store.iter_features():
            obj.add(ids, mat)
        return obj


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def open_vectors(store: Store, dim: int | None, *, rebuild: bool = False, save: bool = True) -> VectorIndex | None:
    """The FAISS index of ``store``, rebuilt from the database when missing, stale or corrupt.

    Returns None for an index that holds no features yet and has no known dimension.
    """
    path = store.root / FAISS_NAME
    digest = store.feature_digest()
    dim = dim or store.get_meta("feature_dim")
    if not rebuild and path.exists():
        try:
            stored = json.loads(path.with_name(DIGEST_NAME).read_text())
            if stored == digest:
                vi = VectorIndex.read(path)
                if vi.ntotal == digest["count"] and (dim is None or vi.dim == dim):
                    return vi
            log.warning("%s is stale; rebuilding it from the database", path)
        except Exception as exc:  # any unreadable file is rebuilt, never trusted
            log.warning("%s is unreadable (%s); rebuilding it from the database", path, exc)
    if dim is None:
        return None
    vi = VectorIndex.build(store, int(dim))
    if save:
        try:
            vi.save(path, digest)
        except OSError as exc:
            raise IndexError_(f"{path}: cannot write vector index: {exc}") from exc
    return vi

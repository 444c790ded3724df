"""Per-shot feature vectors in FAISS, keyed by shot id.

The database's ``features`` table is the source of truth. The FAISS file beside it
is a cache for fast search: it is written atomically (temp file + rename) with a
digest of the feature table, and on open a missing, stale or corrupt file is
rebuilt from the database.

The index type follows the collection's size: exact inner-product search
(``IDMap2,Flat``) below :data:`IVF_MIN_SHOTS` vectors, an inverted file with
product quantisation (``IVF{nlist},PQ{m}``: :data:`PQ_BYTES` bytes a vector,
k-means trained on a sample of the data, :data:`NPROBE` lists probed) above it,
whose best :data:`RERANK` candidates are re-scored exactly against the stored
float16 features (1 MB read from SQLite per query). Measured on the benchmark's
vectors (docs/speed.md, "Since schema 5"): 64-byte codes alone cannot order shots
of one scene (recall@10 0.644 with 100 re-ranked), 400 re-ranked give 1.0 at 15 ms
p95 of CPU, at 1/15 of the 8-bit scalar quantiser's size on disk and in memory. With a CUDA build of
FAISS and a GPU present, searches run on the GPU.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import IndexError_
from .store import Store

log = logging.getLogger(__name__)
#: One save at a time in this process (see :meth:`VectorIndex.save`).
_SAVING = threading.Lock()

FAISS_NAME = "vectors.faiss"
DIGEST_NAME = "vectors.json"
#: Below this many vectors exact search is fast enough and needs no training.
IVF_MIN_SHOTS = 50_000
#: Inverted lists probed per query (of ``nlist`` ≈ 4·√N, at most 4096).
NPROBE = 24
TRAIN_PER_LIST = 40
#: Bytes of a product-quantised vector (sub-quantisers of 8 bits; fewer when the dimension needs).
PQ_BYTES = 64
#: Candidates re-scored exactly with the stored features, beyond the ``k`` asked for.
RERANK = 400


def _faiss():
    import faiss  # imported lazily: loading it costs ~0.3 s

    return faiss


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so inner product is cosine similarity."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def choose_kind(n: int) -> str:
    return "flat" if n < IVF_MIN_SHOTS else "ivf"


def right_kind(vi: "VectorIndex", n: int) -> bool:
    """Whether ``vi``'s type still suits ``n`` vectors (with hysteresis, so an index
    near the limit is not rebuilt back and forth)."""
    return vi.kind == choose_kind(n) or n < 2 * IVF_MIN_SHOTS


def pq_bytes(dim: int) -> int:
    """The largest divisor of ``dim`` up to :data:`PQ_BYTES` (PQ splits a vector into equal parts)."""
    return max(m for m in range(1, PQ_BYTES + 1) if dim % m == 0)


def nlist_for(n: int) -> int:
    return int(min(4096, max(64, 4 * math.sqrt(max(n, 1)))))


class VectorIndex:
    """Cosine-similarity search over shot features, keyed by shot id."""

    def __init__(self, dim: int, kind: str = "flat", nlist: int | None = None):
        faiss = _faiss()
        self.dim, self.kind = dim, kind
        if kind == "flat":
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif kind == "ivf":
            self.index = faiss.index_factory(dim, f"IVF{nlist or 1024},PQ{pq_bytes(dim)}", faiss.METRIC_INNER_PRODUCT)
        else:
            raise ValueError(f"unknown vector index kind {kind!r}")
        self._search_index = None
        self.exact: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, sample: np.ndarray) -> None:
        self.index.train(normalise(sample))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(normalise(vectors), np.asarray(ids, dtype=np.int64))
            self._search_index = None

    def remove(self, ids) -> None:
        if len(ids):
            self.index.remove_ids(np.asarray(list(ids), dtype=np.int64))
            self._search_index = None

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(similarities, ids)`` of the ``k`` nearest shots to each query row (id -1 pads)."""
        k = max(1, min(k, self.ntotal))
        queries = normalise(np.atleast_2d(vectors))
        # One query is a few ms of work: OpenMP threads cost more than they bring
        # (waking them, and spinning when the other core is busy decoding).
        _faiss().omp_set_num_threads(1 if len(queries) < 16 else os.cpu_count() or 1)
        if self.kind != "ivf" or self.exact is None:
            return self._searcher().search(queries, k)
        _, ids = self._searcher().search(queries, min(k + RERANK, self.ntotal))
        out_s, out_i = np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        for row, (q, cand) in enumerate(zip(queries, ids)):
            found, mat = self.exact(cand[cand >= 0])
            exact = normalise(mat) @ q if len(found) else np.empty(0, np.float32)
            best = np.lexsort((found, -exact))[:k]
            out_s[row, : len(best)], out_i[row, : len(best)] = exact[best], found[best]
        return out_s, out_i

    def _searcher(self):
        if self._search_index is None:
            faiss = _faiss()
            if self.kind == "ivf":
                faiss.extract_index_ivf(self.index).nprobe = NPROBE
            self._search_index = self.index
            if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
                try:
                    self._search_index = faiss.index_cpu_to_all_gpus(self.index)
                except Exception as exc:  # some index types have no GPU version
                    log.info("FAISS GPU search unavailable (%s); searching on CPU", exc)
        return self._search_index

    def save(self, path: Path, digest: dict) -> None:
        """Write the file and its digest; threads of one process (a server's readers) take turns,
        each through its own temporary file, so no save renames another's half-written file."""
        faiss = _faiss()
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        with _SAVING:
            faiss.write_index(self.index, str(tmp))
            os.replace(tmp, path)
            _write_json_atomic(path.with_name(DIGEST_NAME), {**digest, "kind": self.kind})

    @classmethod
    def read(cls, path: Path) -> "VectorIndex":
        faiss = _faiss()
        index = faiss.read_index(str(path))
        obj = cls.__new__(cls)
        obj.index, obj.dim, obj._search_index, obj.exact = index, index.d, None, None
        obj.kind = "ivf" if faiss.try_extract_index_ivf(index) is not None else "flat"
        return obj

    @classmethod
    def build(cls, store: Store, dim: int) -> "VectorIndex":
        """A new index of the right kind for the store's size, holding all its features."""
        n = store.feature_digest()["count"]
        kind = choose_kind(n)
        obj = cls(dim, kind, nlist_for(n) if kind == "ivf" else None)
        if kind == "ivf":
            nlist = nlist_for(n)
            obj.train(_sample_features(store, nlist * TRAIN_PER_LIST, n))
            log.info("trained IVF%d,PQ%d on %d of %d vectors", nlist, pq_bytes(dim), min(n, nlist * TRAIN_PER_LIST), n)
        for ids, mat in store.iter_features():
            obj.add(ids, mat)
        obj.exact = store.features_of
        return obj


def _sample_features(store: Store, want: int, n: int) -> np.ndarray:
    """About ``want`` vectors spread evenly over the table (every k-th chunk row)."""
    step = max(1, n // want)
    parts = [mat[::step] for _, mat in store.iter_features()]
    return np.concatenate(parts)[:want] if parts else np.empty((0, 0), np.float32)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def open_vectors(store: Store, dim: int | None, *, rebuild: bool = False, save: bool = True) -> VectorIndex | None:
    """The FAISS index of ``store``, rebuilt from the database when missing, stale,
    corrupt, or of the wrong kind for the collection's size (grown past the exact
    search limit). Returns None for an index that has no known dimension yet."""
    path = store.root / FAISS_NAME
    digest = store.feature_digest()
    dim = dim or store.get_meta("feature_dim")
    if not rebuild and path.exists():
        try:
            stored = json.loads(path.with_name(DIGEST_NAME).read_text())
            stored.pop("kind", None)
            if stored == digest:
                vi = VectorIndex.read(path)
                if vi.ntotal == digest["count"] and (dim is None or vi.dim == dim) and right_kind(vi, vi.ntotal):
                    vi.exact = store.features_of
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

"""Ranking: evaluate a query AST over the index's concept scores.

A query of one concept is answered by an index scan of ``scores(concept_id,
score)``. Any other query combines dense per-concept columns over shot ids (a
missing score reads as 0) with numpy. Columns are read from SQLite once and kept
in a :class:`ColumnCache` until the database changes (any connection's commit),
so a long-running process (the web server) answers boolean queries over a
million shots in milliseconds.
"""
from __future__ import annotations

import numpy as np

from ..errors import UsageError, unknown
from ..index.store import Store
from .query import And, Concept, Node, Not, Or, Weighted, concepts_of


def resolve_concepts(store: Store, node: Node) -> dict[str, int]:
    """Map the query's concept names to ids; unknown names raise with suggestions."""
    known = store.concept_ids()
    lowered = {k.lower(): v for k, v in known.items()}
    out = {}
    for name in concepts_of(node):
        cid = known.get(name, lowered.get(name.lower().replace(" ", "_"), lowered.get(name.lower())))
        if cid is None:
            dropped = (store.get_meta("dropped_concepts") or {}).get(name.lower())
            if dropped:  # not a typo: the model the index was upgraded to has no such concept
                raise UsageError(f"concept {name!r} was dropped when this index was upgraded to model "
                                 f"{dropped['model']!r} (version {dropped['version']}) on {dropped['at']}: "
                                 "see `vidconcept concepts` for the concepts it has")
            raise unknown("concept", name, known)
        out[name] = cid
    return out


def evaluate(node: Node, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Score every shot for ``node``; ``columns`` maps concept name → dense scores."""
    if isinstance(node, Concept):
        return columns[node.name]
    if isinstance(node, Not):
        return 1.0 - evaluate(node.child, columns)
    if isinstance(node, And):
        return np.minimum.reduce([evaluate(c, columns) for c in node.children])
    if isinstance(node, Or):
        return np.maximum.reduce([evaluate(c, columns) for c in node.children])
    if isinstance(node, Weighted):
        total = sum(w for w, _ in node.terms)
        return sum(w * evaluate(c, columns) for w, c in node.terms) / total
    raise TypeError(f"not a query node: {node!r}")


class ColumnCache:
    """Dense score columns (float32 over shot ids) and the valid shot ids, cached
    until the database changes."""

    def __init__(self, store: Store, max_columns: int = 256):
        self.store, self.max_columns = store, max_columns
        self._version = None
        self._columns: dict[int, np.ndarray] = {}
        self._valid: np.ndarray | None = None

    def _check(self) -> None:
        version = self.store.version()
        if version != self._version:
            self._columns.clear()
            self._valid, self._version = None, version

    def valid(self) -> np.ndarray:
        self._check()
        if self._valid is None:
            self._valid = self.store.shot_ids()
        return self._valid

    def column(self, concept_id: int) -> np.ndarray:
        self._check()
        col = self._columns.get(concept_id)
        if col is None:
            valid = self.valid()
            col = np.zeros(int(valid.max()) + 1 if len(valid) else 1, np.float32)
            shot_ids, scores = self.store.concept_column(concept_id)
            col[shot_ids] = scores
            if len(self._columns) >= self.max_columns:
                self._columns.pop(next(iter(self._columns)))
            self._columns[concept_id] = col
        return col


def rank(store: Store, node: Node, top: int = 20, offset: int = 0, min_score: float = 0.0,
         cache: ColumnCache | None = None, within: np.ndarray | None = None) -> tuple[list[tuple[int, float]], int]:
    """Return ``([(shot_id, score), …], total)``: one page of shots scoring above
    ``min_score`` (and above 0), best first, and how many match in all.
    ``within`` restricts the ranking to these shot ids (e.g. one video's)."""
    ids = resolve_concepts(store, node)
    floor = max(min_score, 1e-12)
    if within is not None:
        return _rank_dense(node, ids, cache or ColumnCache(store), np.asarray(within, np.int64), top, offset, floor)
    if isinstance(node, Concept):  # an index scan for the page, an index range count for the total
        cid = ids[node.name]
        return [(int(s), float(v)) for s, v in store.top_by_concept(cid, top, offset, floor)], store.count_by_concept(cid, floor)
    cache = cache or ColumnCache(store)
    return _rank_dense(node, ids, cache, cache.valid(), top, offset, floor)


def _rank_dense(node: Node, ids: dict[str, int], cache: ColumnCache, valid: np.ndarray, top: int, offset: int,
                floor: float) -> tuple[list[tuple[int, float]], int]:
    columns = {name: cache.column(cid) for name, cid in ids.items()}
    valid = valid[valid < min(len(c) for c in columns.values())]  # ids the cache has seen
    scores = evaluate(node, columns)[valid] if len(valid) else np.empty(0, np.float32)
    keep = np.flatnonzero(scores >= floor)
    if offset + top < len(keep) // 4:  # partial selection: only the page's neighbourhood is sorted
        part = np.argpartition(-scores[keep], offset + top)[: offset + top]
        keep = keep[part]
        total = int(np.count_nonzero(scores >= floor))
    else:
        total = int(len(keep))
    order = keep[np.lexsort((valid[keep], -scores[keep]))]
    page = order[offset : offset + top]
    return [(int(valid[i]), float(scores[i])) for i in page], total

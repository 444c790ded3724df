"""Ranking: evaluate a query AST over the index's concept scores.

A query of one concept is answered by an index scan of ``scores(concept_id,
score)``. Any other query loads the columns of the concepts it names into dense
arrays over shot ids (a missing score reads as 0) and combines them with numpy,
which stays interactive at a million shots.
"""
from __future__ import annotations

import numpy as np

from ..errors import unknown
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


def rank(store: Store, node: Node, top: int = 20, offset: int = 0, min_score: float = 0.0) -> tuple[list[tuple[int, float]], int]:
    """Return ``([(shot_id, score), …], total)``: one page of shots scoring above
    ``min_score`` (and above 0), best first, and how many match in all."""
    ids = resolve_concepts(store, node)
    floor = max(min_score, 1e-12)
    if isinstance(node, Concept):
        cid = ids[node.name]
        return [(int(s), float(v)) for s, v in store.top_by_concept(cid, top, offset, floor)], store.count_by_concept(cid, floor)
    valid = store.shot_ids()
    size = int(valid.max()) + 1 if len(valid) else 1
    columns = {}
    for name, cid in ids.items():
        col = np.zeros(size, np.float32)
        shot_ids, scores = store.concept_column(cid)
        col[shot_ids] = scores
        columns[name] = col
    scores = evaluate(node, columns)[valid] if len(valid) else np.empty(0, np.float32)
    keep = np.nonzero(scores >= floor)[0]
    order = keep[np.lexsort((valid[keep], -scores[keep]))]
    page = order[offset : offset + top]
    return [(int(valid[i]), float(scores[i])) for i in page], int(len(keep))

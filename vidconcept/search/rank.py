"""Ranking: evaluate a query AST over the index's concept scores.

With a current column store (:mod:`vidconcept.index.columns`) a query is two
passes. The coarse pass evaluates the query over the needed columns' 8-bit codes
(``min``/``max``/``255 - x`` map codes to codes; a weighted sum uses the bins'
centres), counts and selects from a 256-bin histogram (or a partial sort), and
bounds every shot's exact score. The exact pass reads float32 scores only for
the shots whose page or total the bounds cannot decide: so pages and totals are
the same as ranking the exact scores, in the same order (score, then shot id).

The exact scores come from SQLite's packed rows (:meth:`Store.scores_of`), read
once per query for all the shots and concepts that need them.

Without a column store (a crashed writer's store is being rebuilt in the background,
or the folder cannot be written) a query combines dense per-concept columns read
from SQLite in one scan, kept in a :class:`ColumnCache` until the database changes.
"""
from __future__ import annotations

import functools

import numpy as np

from ..errors import UsageError, unknown
from ..index.columns import DECODE, MARGIN, Columns, ColumnStore, StaleColumns, code_bounds
from ..index.store import Store
from .query import And, Concept, Node, Not, Or, Weighted, concepts_of


def resolve_concepts(store: Store, node: Node, known: dict[str, int] | None = None) -> dict[str, int]:
    """Map the query's concept names to ids (``known``: name → id, when the caller has it);
    unknown names raise with suggestions.

    A name may be any spelling of a concept (``"Living Room"``) or one of the model's aliases
    (``living_room``, ``airplanes``): the aliases the index recorded at ingest, else the default ones.
    """
    from ..model.names import DEFAULT_ALIASES, resolve

    known = store.concept_ids() if known is None else known
    lowered = None
    out = {}
    for name in concepts_of(node):
        cid = known.get(name)
        if cid is None:  # case-insensitively, and "ice cream" for ice_cream
            lowered = lowered or {k.lower(): v for k, v in known.items()}
            cid = lowered.get(name.lower().replace(" ", "_"), lowered.get(name.lower()))
        if cid is None:
            own = resolve(name, known, store.get_meta("aliases") or DEFAULT_ALIASES)
            cid = known.get(own) if own else None
        if cid is None:
            dropped = (store.get_meta("dropped_concepts") or {}).get(name.lower())
            if dropped:  # not a typo: the model the index was upgraded to has no such concept
                raise UsageError(f"concept {name!r} was dropped when this index was upgraded to model "
                                 f"{dropped['model']!r} (version {dropped['version']}) on {dropped['at']}: "
                                 "see `vidconcept concepts` for the concepts it has")
            raise unknown("concept", name, known)
        out[name] = cid
    return out


def evaluate(node: Node, columns: dict[str, np.ndarray], one: float = 1.0) -> np.ndarray:
    """Score every shot for ``node``; ``columns`` maps concept name → dense scores.

    ``one`` is the top of the scale, what ``NOT x`` subtracts from: 1.0 for scores, 255 for the
    column store's uint8 codes (``min``/``max``/``255 - x`` map codes to codes; a weighted
    mean does not, so codes never meet one).
    """
    if isinstance(node, Concept):
        return columns[node.name]
    if isinstance(node, Not):
        return one - evaluate(node.child, columns, one)
    if isinstance(node, (And, Or)):
        return functools.reduce(np.minimum if isinstance(node, And) else np.maximum,
                                [evaluate(c, columns, one) for c in node.children])
    if isinstance(node, Weighted):
        total = sum(w for w, _ in node.terms)
        return sum(w * evaluate(c, columns, one) for w, c in node.terms) / total
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
        if concept_id not in self._columns:
            self._load([concept_id])
        return self._columns[concept_id]

    def _load(self, concept_ids: list[int]) -> None:
        """Columns of several concepts in one scan of the packed rows."""
        valid = self.valid()
        slot_of = self.store.slots()
        size = int(valid.max()) + 1 if len(valid) else 1
        cols = {cid: np.zeros(size, np.float32) for cid in concept_ids}
        for ids, mat in self.store.scan_scores():
            ok = ids < size
            for cid in concept_ids:
                slot = slot_of.get(cid)
                if slot is not None and slot < mat.shape[1]:
                    cols[cid][ids[ok]] = mat[ok, slot]
        for cid, col in cols.items():
            if len(self._columns) >= self.max_columns:
                self._columns.pop(next(iter(self._columns)))
            self._columns[cid] = col


    def columns(self, concept_ids: dict[str, int]) -> dict[str, np.ndarray]:
        """The columns of several concepts read at one version of the database (a writer
        committing meanwhile makes it read them again), so they never mix two versions."""
        for _ in range(5):
            self._check()
            version = self._version
            missing = [cid for cid in dict.fromkeys(concept_ids.values()) if cid not in self._columns]
            if missing:
                self._load(missing)
            cols = {name: self.column(cid) for name, cid in concept_ids.items()}
            if self.store.version() == version:
                return cols
        n = min(len(c) for c in cols.values())  # a writer that never pauses: common ids only
        return {name: c[:n] for name, c in cols.items()}


def rank(store: Store, node: Node, top: int = 20, offset: int = 0, min_score: float = 0.0,
         cache: ColumnCache | None = None, within: np.ndarray | None = None,
         columns: Columns | None = None) -> tuple[list[tuple[int, float]], int]:
    """Return ``([(shot_id, score), …], total)``: one page of shots scoring above
    ``min_score`` (and above 0), best first, and how many match in all.
    ``within`` restricts the ranking to these shot ids (e.g. one video's)."""
    floor = max(min_score, 1e-12)
    for _ in range(3):  # a store replaced under us: read the manifest again
        cs = columns.get() if columns is not None else None
        ids = resolve_concepts(store, node, columns.names if cs is not None else None)
        if cs is None or not all(cs.has(cid) for cid in ids.values()):
            break
        try:
            return rank_columns(cs, node, ids, top, offset, floor, within)
        except StaleColumns:
            columns.current = None
    if within is not None:
        return _rank_dense(node, ids, cache or ColumnCache(store), np.asarray(within, np.int64), top, offset, floor)
    cache = cache or ColumnCache(store)
    return _rank_dense(node, ids, cache, cache.valid(), top, offset, floor)


def _rank_dense(node: Node, ids: dict[str, int], cache: ColumnCache, valid: np.ndarray, top: int, offset: int,
                floor: float) -> tuple[list[tuple[int, float]], int]:
    columns = cache.columns(ids)
    valid = valid[valid < min(len(c) for c in columns.values())]  # ids the cache has seen
    scores = evaluate(node, columns)[valid] if len(valid) else np.empty(0, np.float32)
    keep = np.flatnonzero(scores >= floor)
    total = int(len(keep))
    if offset + top < len(keep) // 4:  # partial selection: only the page's neighbourhood is sorted
        kth = np.partition(scores[keep], len(keep) - offset - top)[len(keep) - offset - top]
        keep = keep[scores[keep] >= kth]  # all shots tied with the last of the page, so ties go by id
    order = keep[np.lexsort((valid[keep], -scores[keep]))]
    page = order[offset : offset + top]
    return [(int(valid[i]), float(scores[i])) for i in page], total


# ---- over the column store ------------------------------------------------------------------------
def least_positive(node: Node) -> float:
    """A lower bound of the smallest positive score ``node`` can give: stored scores are
    >= 0.001, ``1 - x`` of a float32 below 1 is >= 2**-24, a weighted mean scales by its weights."""
    if isinstance(node, (Concept, Not)):
        return 2.0**-24
    if isinstance(node, (And, Or)):
        return min(least_positive(c) for c in node.children)
    total = sum(w for w, _ in node.terms)
    return min(w / total * least_positive(c) for w, c in node.terms) * 0.5  # 0.5: float32 rounding


def has_weights(node: Node) -> bool:
    if isinstance(node, Concept):
        return False
    if isinstance(node, Not):
        return has_weights(node.child)
    if isinstance(node, (And, Or)):
        return any(has_weights(c) for c in node.children)
    return True


def rank_columns(cs: ColumnStore, node: Node, ids: dict[str, int], top: int, offset: int, floor: float,
                 within: np.ndarray | None = None) -> tuple[list[tuple[int, float]], int]:
    """:func:`rank` over a column store: coarse codes for all, exact scores where they decide."""
    rows = cs.positions(within) if within is not None else None

    def coarse(cid: int) -> np.ndarray:
        col = cs.codes(cid)
        return col if rows is None else col[rows]

    def exact(sel: np.ndarray) -> np.ndarray:  # the query's exact score at selected rows (of ``rows``): one read
        at = sel if rows is None else rows[sel]
        got = cs.exact_rows(at, list(dict.fromkeys(ids.values())))
        return evaluate(node, {name: got[cid] for name, cid in ids.items()})

    k = offset + top
    tiny = least_positive(node)
    if has_weights(node):  # bins' centres, within MARGIN of the exact score
        value = evaluate(node, {name: DECODE[coarse(cid)] for name, cid in ids.items()})
        sure, maybe, cand = _select_values(value, floor, tiny, k)
    else:  # min, max and NOT map codes to codes
        code = evaluate(node, {name: coarse(cid) for name, cid in ids.items()}, one=255)
        hist = cs.histogram(ids[node.name]) if isinstance(node, Concept) and rows is None else None
        sure, maybe, cand = _select_codes(code, floor, tiny, k, hist)
    both = exact(np.concatenate([maybe, cand]))
    maybe_score, cand_score = both[: len(maybe)], both[len(maybe):]
    passed = maybe_score >= floor
    total = sure + int(np.count_nonzero(passed))
    sel = np.concatenate([cand, maybe[passed]])
    score = np.concatenate([cand_score, maybe_score[passed]])
    keep = score >= floor
    sel, score = sel[keep], score[keep]
    shot = cs.ids[sel if rows is None else rows[sel]]
    order = np.lexsort((shot, -score))[offset:k]
    return [(int(shot[i]), float(score[i])) for i in order], total


def _select_codes(code: np.ndarray, floor: float, tiny: float, k: int,
                  hist: np.ndarray | None) -> tuple[int, np.ndarray, np.ndarray]:
    """From uint8 codes: ``(how many surely pass floor, rows only exact scores decide,
    rows holding the best k of those that surely pass)``. Counts come from ``hist``
    (a stored histogram) or from one comparison pass each (cheaper than a histogram)."""
    if hist is not None:
        at_least = np.cumsum(hist[::-1])[::-1]
        count = lambda t: int(at_least[t]) if t < 256 else 0  # noqa: E731
    else:
        count = lambda t: int(np.count_nonzero(code >= t)) if t < 256 else 0  # noqa: E731
    sure_code, maybe_code = code_bounds(floor, tiny)
    sure = count(sure_code)
    maybe = np.empty(0, np.int64)
    if maybe_code < sure_code and count(maybe_code) > sure:
        maybe = np.flatnonzero((code >= maybe_code) & (code < sure_code))
    t = sure_code
    if sure > k:
        t = _highest_code_with(count, k, sure_code, int(code.max()))
    # A shot of code t-2 or lower scores below every shot of code >= t (bins are 1/254 wide).
    return sure, maybe, np.flatnonzero(code >= max(t - 1, sure_code))


def _highest_code_with(count, k: int, low: int, top: int) -> int:
    """The highest code ``t`` in ``[low, top]`` with ``count(t) >= k`` (``count(low) >= k``;
    ``count`` falls as ``t`` rises). Galloping down from the top, then bisecting: the best k
    of a query usually lie within a few codes of its maximum, so this is 2-4 passes."""
    if count(top) >= k:
        return top
    bad, step, good = top, 1, max(low, top - 1)
    while good > low and count(good) < k:
        bad, step = good, step * 2
        good = max(low, top - step)
    while bad - good > 1:  # count(good) >= k > count(bad)
        mid = (good + bad) // 2
        good, bad = (mid, bad) if count(mid) >= k else (good, mid)
    return good


def _select_values(value: np.ndarray, floor: float, tiny: float, k: int) -> tuple[int, np.ndarray, np.ndarray]:
    """:func:`_select_codes` for approximate scores within ``MARGIN`` of the exact ones."""
    sure_mask = value > 0 if floor <= tiny else value >= floor + MARGIN
    maybe = np.flatnonzero(~sure_mask & (value >= floor - MARGIN)) if floor > tiny else np.empty(0, np.int64)
    sure = np.flatnonzero(sure_mask)
    if len(sure) > k:
        kth = np.partition(value[sure], len(sure) - k)[len(sure) - k]
        sure_rows = sure
        return len(sure), maybe, sure_rows[value[sure_rows] >= kth - 2 * MARGIN]
    return len(sure), maybe, sure

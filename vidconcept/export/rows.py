"""Which shots an export holds, and one flat record per shot for the writers.

Selection (video, query, or the whole index) is kept apart from rendering so the
web UI can hand :func:`vidconcept.export.render` the shot ids of a result page.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .. import config
from ..errors import UsageError, unknown
from ..records import ShotHit

log = logging.getLogger(__name__)

#: Page size used to walk all results of a query (the API's maximum ``top``).
QUERY_PAGE = 10_000

ShotId = int


#: One exported shot: the record search returns too (``concepts``: its top concepts;
#: ``scores``: the selected concepts'; ``score``: the query's, when the shots come from a search).
ShotRow = ShotHit


def video_shot_ids(index, target: str | int | os.PathLike) -> list[ShotId]:
    """Shot ids of one video in shot order; ``target`` is a path or a video id."""
    return index.store.ordered_shot_ids(resolve_video(index.store, target)["id"])


def all_shot_ids(index) -> list[ShotId]:
    """Every shot of the index, by video path then shot order."""
    return index.store.ordered_shot_ids()


def query_hits(index, query: str, min_score: float = 0.0) -> list[tuple[ShotId, float]]:
    """All shots a search returns (every page), best first, with their scores."""
    hits: list[tuple[ShotId, float]] = []
    while True:
        page = index.search(query, top=QUERY_PAGE, min_score=min_score, offset=len(hits))
        hits += [(r.shot_id, r.score) for r in page.results]
        if not page.results or len(hits) >= page.total:
            return hits


def resolve_video(store, target: str | int | os.PathLike) -> dict:
    """The ``videos`` row of a video id, a path (resolved), or a basename unique in the index."""
    text = str(target)
    if isinstance(target, int) or text.isdigit():
        video = store.video(int(text))
        if video is not None:
            return video
    video = store.video_by_path(text) or store.video_by_path(str(Path(text).expanduser().resolve()))
    if video is not None:
        return video
    return _video_by_name(store, Path(text).name, text)


def _video_by_name(store, name: str, target: str) -> dict:
    videos = list(store.videos())
    same = [v for v in videos if Path(v["path"]).name == name]
    if len(same) == 1:
        return same[0]
    if same:
        choices = ", ".join(f"{v['id']} ({v['path']})" for v in same)
        raise UsageError(f"{len(same)} videos are named {name!r}: give the full path or one of the ids {choices}")
    known = [Path(v["path"]).name for v in videos] + [str(v["id"]) for v in videos]
    err = unknown("video", target, known)
    raise UsageError(f"{err} (give a path or id of an indexed video; `vidconcept info` counts them)") from err


def resolve_concept_names(store, names: Iterable[str]) -> list[str]:
    """The index's spelling of each name; unknown names raise as in search (with suggestions)."""
    known = store.concept_ids()
    lowered = {k.lower(): k for k in known}
    out = []
    for name in names:
        key = name if name in known else lowered.get(name.lower().replace(" ", "_"), lowered.get(name.lower()))
        if key is None:
            raise unknown("concept", name, known)
        out.append(key)
    return out


def build_rows(index, shots: Sequence[ShotId | tuple[ShotId, float]], concepts: Sequence[str] = ()) -> list[ShotRow]:
    """Flat records of ``shots`` (ids, or ``(id, score)`` from a search), in the given order."""
    pairs = [s if isinstance(s, tuple) else (s, None) for s in shots]
    table = index.store.shots([i for i, _ in pairs])
    root = Path(index.root).resolve()
    rows = []
    for shot_id, score in pairs:
        record = table.get(shot_id)
        if record is None:
            log.warning("shot %s is not in the index any more; skipped", shot_id)
            continue
        rows.append(_row(index, ShotHit.from_row(record, root, score=score), concepts))
    return rows


def _row(index, row: ShotHit, concepts: Sequence[str]) -> ShotHit:
    """Add the shot's top concepts and the selected concepts' scores."""
    row.concepts = index.store.top_concepts(row.shot_id, config.TOP_CONCEPTS)
    if concepts:
        scores = index.store.shot_scores(row.shot_id)
        row.scores = {c: round(scores.get(c, 0.0), 6) for c in concepts}
    return row


def passes(row: ShotRow, min_score: float) -> bool:
    """Whether a shot of a video export clears ``min_score``.

    With concepts selected, any of them must reach it; otherwise the shot's best
    concept must (so ``--min-score`` alone drops shots the model is unsure about).
    """
    if min_score <= 0:
        return True
    values = row.scores.values() if row.scores else row.concepts.values()
    return any(v >= min_score for v in values)

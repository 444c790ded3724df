"""TRECVID semantic-indexing run files in the trec_eval form that NIST's tools read.

One line per ranked shot, per concept::

    <concept> Q0 shot<video_id>_<shot_index+1> <rank> <score> <run_id>

This is the ``trec_eval`` results layout (topic, the literal ``Q0``, document,
rank from 1, score, run tag) that TRECVID's ``sample_eval.pl`` (inferred AP,
Yilmaz & Aslam 2006) scores against its qrels. Shot ids follow TRECVID's master
shot reference style ``shotXXX_YYY`` (video number, shot number from 1), with
the index's video id as ``XXX``. The concept column is the concept name with
spaces as ``_``, unless a ``topics`` mapping gives TRECVID's feature numbers.

TRECVID's submitted SIN runs were XML (``videoFeatureExtractionRunResult`` /
``videoFeatureExtractionFeatureResult fNum`` / ``item``); that form needs the
campaign's feature numbers and participant metadata and is not written here.

Per concept, the shots in scope are ranked by stored score (a missing score reads
as 0, as in search), ties broken by shot id so runs are reproducible, and cut at
``depth`` (TRECVID SIN accepted at most 2000 shots per feature).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import UsageError

DEFAULT_RUN_ID = "vidconcept"
DEFAULT_DEPTH = 2000

RunLine = str


def shot_tag(video_id: int, shot_index: int) -> str:
    """TRECVID shot id: ``shot<video>_<shot number from 1>``."""
    return f"shot{video_id}_{shot_index + 1}"


def to_trecvid(index, shot_ids: Sequence[int], concepts: Sequence[str], *, run_id: str = DEFAULT_RUN_ID,
               depth: int = DEFAULT_DEPTH, min_score: float = 0.0, topics: Mapping[str, str] | None = None) -> str:
    """The run file text of ``concepts`` ranked over ``shot_ids``."""
    check_run_id(run_id)
    table = index.store.shots(shot_ids)
    tags = {i: shot_tag(r["video_id"], r["shot_index"]) for i, r in table.items()}
    ids = index.store.concept_ids()
    lines: list[RunLine] = []
    for name in concepts:
        topic = (topics or {}).get(name, name.replace(" ", "_"))
        ranked = rank_shots(index.store, ids[name], list(tags), depth, min_score)
        lines += [f"{topic} Q0 {tags[s]} {rank} {score:.6f} {run_id}" for rank, (s, score) in enumerate(ranked, 1)]
    return "\n".join(lines) + ("\n" if lines else "")


def rank_shots(store, concept_id: int, shot_ids: Sequence[int], depth: int, min_score: float) -> list[tuple[int, float]]:
    """``(shot_id, score)`` of ``shot_ids`` best first, at most ``depth``, each at least ``min_score``."""
    stored_ids, stored = store.concept_column(concept_id)
    scores = dict(zip(stored_ids.tolist(), stored.astype(float).tolist()))
    ranked = sorted(((s, scores.get(s, 0.0)) for s in shot_ids), key=lambda p: (-p[1], p[0]))
    return [p for p in ranked[:depth] if p[1] >= min_score]


def check_run_id(run_id: str) -> None:
    """Run ids are one whitespace-free token in every trec_eval line."""
    if not run_id or any(c.isspace() for c in run_id):
        raise UsageError(f"run id must be one word without spaces, not {run_id!r}")

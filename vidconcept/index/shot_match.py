"""Shot identities across versions of one file.

When a changed file is ingested again, a shot whose span is unchanged (both ends within
:data:`SPAN_TOLERANCE` frames) keeps its id, so what refers to it — user concept labels,
exported lists, bookmarks in the web UI — stays valid. The other old shots are gone; a
label on one follows the new shot that overlaps it most in time (:func:`follow`), and a
label that cannot follow is reported, never silently dropped.

Example::

    kept = match_shots(old_rows, new_shots)     # new position -> old shot id
    follow({7: (10.0, 14.0)}, {31: (9.5, 13.9), 32: (13.9, 20.0)})   # {7: 31}
"""
from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: Frames either end of a shot may move and the shot still counts as the same one
#: (a re-encode or a detector change moves a cut by a frame or two).
SPAN_TOLERANCE = 2
#: A label follows a new shot covering at least this share of the old shot's time, or
#: lying at least this share inside it (a shot split in two: each part lies inside).
MIN_OVERLAP = 0.5

Span = tuple[float, float]


@dataclass
class Reshoot:
    """What a re-ingest did to one video's shots."""

    kept: set[int] = field(default_factory=set)  # ids of shots that kept their id
    gone: dict[int, Span] = field(default_factory=dict)  # removed shot id -> its (start_s, end_s)
    spans: dict[int, Span] = field(default_factory=dict)  # every shot of the new version: id -> span


def match_shots(old: Sequence[Mapping], new: Sequence, tolerance: int = SPAN_TOLERANCE) -> dict[int, int]:
    """New shots (by position in ``new``) whose span matches an old shot's: position -> old id.

    ``old`` rows have ``id``, ``start_frame``, ``end_frame``; ``new`` items have
    ``start_frame`` and ``end_frame``. One-to-one; the closest old shot wins.
    """
    ordered = sorted(old, key=lambda r: r["start_frame"])
    starts = [r["start_frame"] for r in ordered]
    taken: set[int] = set()
    out: dict[int, int] = {}
    for pos, shot in enumerate(new):
        lo = bisect.bisect_left(starts, shot.start_frame - tolerance)
        hi = bisect.bisect_right(starts, shot.start_frame + tolerance)
        near = [r for r in ordered[lo:hi] if r["id"] not in taken and abs(r["end_frame"] - shot.end_frame) <= tolerance]
        if near:
            best = min(near, key=lambda r: abs(r["start_frame"] - shot.start_frame) + abs(r["end_frame"] - shot.end_frame))
            taken.add(best["id"])
            out[pos] = best["id"]
    return out


def follow(gone: Mapping[int, Span], spans: Mapping[int, Span]) -> dict[int, int | None]:
    """For each gone shot, the new shot its labels move to (largest time overlap that
    passes :data:`MIN_OVERLAP`), or ``None`` when no new shot covers it."""
    out: dict[int, int | None] = {}
    for old_id, (a0, a1) in gone.items():
        best, best_overlap = None, 0.0
        for new_id, (b0, b1) in spans.items():
            overlap = min(a1, b1) - max(a0, b0)
            if overlap <= 0:
                continue
            share = max(overlap / max(a1 - a0, 1e-9), overlap / max(b1 - b0, 1e-9))
            if share >= MIN_OVERLAP and overlap > best_overlap:
                best, best_overlap = new_id, overlap
        out[old_id] = best
    return out

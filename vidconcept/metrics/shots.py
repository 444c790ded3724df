"""Scoring of content-shot boundaries against ground truth.

Follows the TRECVid shot-boundary task's rule (Smeaton, Over & Doherty,
*Video shot boundary detection: Seven years of TRECVid activity*, CVIU 2010):
a detected boundary counts for a hard cut when it lies within ``tolerance``
frames of it, and for a gradual transition when it lies inside the
transition's span. Transitions are counted once: a second boundary inside the
same transition is not an error (a fade through black naturally has one at
each end of the black), anything else is a false positive.

The truth is a ``testvideo.json``-style dict; transitions that touch through a
black segment (cut to black, black, fade in; fade out, black, fade in) are one
transition, since only content shots count.

Example::

    truth = json.loads(Path("testvideo.json").read_text())
    score = score_boundaries(shots_to_boundaries(shots, frames), truth)
    score.f1
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

Span = tuple[int, int]  # inclusive frame range


@dataclass(frozen=True)
class BoundaryScore:
    """Counts and rates; ``precision``/``recall``/``f1`` are 1.0 when there is nothing to find or miss."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        truth = self.true_positives + self.false_negatives
        return self.true_positives / truth if truth else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: BoundaryScore) -> BoundaryScore:
        return BoundaryScore(self.true_positives + other.true_positives,
                             self.false_positives + other.false_positives,
                             self.false_negatives + other.false_negatives)

    def to_dict(self) -> dict:
        return {**asdict(self), "precision": round(self.precision, 4), "recall": round(self.recall, 4),
                "f1": round(self.f1, 4)}


def truth_spans(truth: dict, tolerance: int = 2) -> list[Span]:
    """The transitions of a ground-truth dict as merged inclusive spans.

    Hard cuts become ``[c - tolerance, c + tolerance]``; gradual transitions
    their ``[from, to]``; black segments join the spans they touch.
    """
    spans = [(c - tolerance, c + tolerance) for c in truth.get("hard_cuts", [])]
    spans += [(g["from"], g["to"]) for g in truth.get("gradual_transitions", [])]
    blacks = [tuple(b) for b in truth.get("black_segments", [])]
    return _merge(spans, blacks)


def _merge(spans: list[Span], blacks: list[Span]) -> list[Span]:
    """Merge overlapping/adjacent spans, letting black segments bridge them."""
    items = sorted([(a, b, False) for a, b in spans] + [(a, b, True) for a, b in blacks])
    merged: list[list] = []  # [start, end, has_transition]
    for a, b, is_black in items:
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
            merged[-1][2] = merged[-1][2] or not is_black
        else:
            merged.append([a, b, not is_black])
    return [(a, b) for a, b, real in merged if real]


def shots_to_boundaries(shots: Iterable[tuple[int, int]], frames: int) -> list[int]:
    """Boundary frames of a shot list (``[start, end)`` pairs): every start and
    end that is not the first or past the last frame of the video."""
    points = set()
    for start, end in shots:
        points.update(p for p in (start, end) if 0 < p < frames)
    return sorted(points)


def score_boundaries(found: Iterable[int], truth: dict, tolerance: int = 2) -> BoundaryScore:
    """Match detected boundary frames to the truth's transitions (see module doc)."""
    spans = truth_spans(truth, tolerance)
    hit = [False] * len(spans)
    false_positives = 0
    for frame in found:
        inside = [i for i, (a, b) in enumerate(spans) if a <= frame <= b]
        if not inside:
            false_positives += 1
        for i in inside:
            hit[i] = True
    tp = sum(hit)
    return BoundaryScore(tp, false_positives, len(spans) - tp)


@dataclass(frozen=True)
class TypedSpan:
    """One ground-truth transition after merging: inclusive frames and its kind."""

    start: int
    end: int
    kind: str  # "cut" or "gradual"


#: Black runs shorter than this at the start or end of a video are decoding
#: artefacts (one black frame before the first picture), not a cut from black.
MIN_BLACK_RUN = 3


def typed_spans(truth: dict, tolerance: int = 2) -> tuple[list[TypedSpan], list[Span]]:
    """Transitions as typed spans, plus the frames where a boundary is neither right nor wrong.

    A merged span is ``"gradual"`` when it holds a gradual transition (a cut
    to black followed by a fade-in is one gradual transition), else ``"cut"``.
    Don't-care zones are the black segments that hold no transition (widened
    by ``tolerance``): whether a detector splits a black run off is the
    scanner's business, since black is never a shot.
    """
    cuts = [(c - tolerance, c + tolerance, "cut") for c in truth.get("hard_cuts", [])]
    grads = [(g["from"], g["to"], "gradual") for g in truth.get("gradual_transitions", [])]
    blacks = [tuple(b) for b in truth.get("black_segments", [])]
    items = sorted([*cuts, *grads, *((a, b, "black") for a, b in blacks)])
    merged: list[list] = []  # [start, end, kinds]
    for a, b, kind in items:
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
            merged[-1][2].add(kind)
        else:
            merged.append([a, b, {kind}])
    spans, dont_care = [], []
    for a, b, kinds in merged:
        if kinds == {"black"}:
            dont_care.append((a - tolerance, b + tolerance))
        else:
            spans.append(TypedSpan(a, b, "gradual" if "gradual" in kinds else "cut"))
    return spans, dont_care


def score_typed(found: Iterable[int], truth: dict, tolerance: int = 2) -> dict[str, BoundaryScore]:
    """Scores for ``"cuts"``, ``"gradual"`` and ``"all"`` transitions (see :func:`typed_spans`).

    Recall per kind is exact. A detection outside every span and don't-care
    zone is a false positive of kind ``"cut"``: the detectors compared report
    single boundary frames, i.e. claim cuts.
    """
    spans, dont_care = typed_spans(truth, tolerance)
    hit = [False] * len(spans)
    false_positives = 0
    for frame in found:
        inside = [i for i, s in enumerate(spans) if s.start <= frame <= s.end]
        for i in inside:
            hit[i] = True
        if not inside and not any(a <= frame <= b for a, b in dont_care):
            false_positives += 1
    out = {}
    for kind, fp in (("cuts", false_positives), ("gradual", 0)):
        mine = [h for h, s in zip(hit, spans) if s.kind == kind.rstrip("s")]
        out[kind] = BoundaryScore(sum(mine), fp, len(mine) - sum(mine))
    out["all"] = out["cuts"] + out["gradual"]
    return out

"""Negatives across data sets: a photo of one set is evidence against another set's concepts.

:func:`merge` leaves every concept a set does not annotate unknown, so a VOC photo of a sofa
taught nothing about ``glacier``: each scene concept was learned as a closed choice among the
photos of its own set, and on real footage (title cards, studios, cartoons) some scene wins.
:func:`merge_open_world` marks those cells *negative* unless the photo may show the concept:
a photo may show concept ``b`` when one of its own concepts ``a`` (a positive or a VOC
"difficult" label) may co-occur with ``b`` (:data:`MAY_CO_OCCUR`, symmetric). A VOC photo
of a sofa thus becomes a negative for ``glacier`` and ``street`` but stays unknown for
``livingroom``; an Intel ``street`` photo stays unknown for ``person``, ``car`` and ``bus``
and becomes a negative for ``sofa``, ``cow`` and ``bedroom``.

The table is a judgement of what can be in a photo of each kind, written once for the concepts
of the default model; a concept it does not name co-occurs with everything (stays unknown),
so new sets are never given wrong negatives by default.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from vidconcept.data.datasets import LabelledImages, merge

log = logging.getLogger(__name__)

INDOOR = "bedroom kitchen livingroom office store"
URBAN = "buildings highway industrial insidecity street suburb tallbuilding"
NATURE = "coast forest glacier mountain opencountry sea"
EVERYWHERE = "*"
VOC = ("aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person pottedplant "
       "sheep sofa train tvmonitor")

#: ``a: "b c …"``: a photo showing ``a`` may also show ``b``, ``c`` … (read both ways); ``*``: anything.
#: Pairs within one data set do not matter: that set's own labels judge them.
MAY_CO_OCCUR: dict[str, str] = {
    # objects (VOC) and the scenes they appear in
    # people are everywhere, but hardly on a glacier: a VOC photo of people is a negative for it
    "person": f"{INDOOR} {URBAN} coast forest mountain opencountry sea {VOC}",
    "dog": EVERYWHERE,
    "cat": f"{INDOOR} {URBAN} coast forest opencountry bird bottle chair diningtable pottedplant sofa tvmonitor",
    "bottle": f"{INDOOR} {URBAN} coast forest opencountry sea",
    "chair": f"{INDOOR} {URBAN} coast forest opencountry sea",
    "diningtable": f"{INDOOR} {URBAN} coast forest opencountry sea",
    "pottedplant": f"{INDOOR} {URBAN} coast forest opencountry",
    "sofa": f"{INDOOR}",
    "tvmonitor": f"{INDOOR} insidecity street",
    "bird": f"{URBAN} {NATURE} livingroom kitchen store",
    "aeroplane": f"{URBAN} {NATURE}",
    "boat": f"{URBAN} {NATURE} store",
    "bus": f"{URBAN} opencountry mountain coast forest",
    "car": f"{URBAN} {NATURE} store",
    "motorbike": f"{URBAN} {NATURE} store",
    "bicycle": f"{URBAN} {NATURE} store livingroom",
    "train": f"{URBAN} {NATURE}",
    "cow": f"{NATURE} suburb highway street buildings",
    "horse": f"{NATURE} suburb highway street buildings insidecity",
    "sheep": f"{NATURE} suburb highway street buildings",
    # scenes of one set and those of another (Intel: buildings forest glacier mountain sea street)
    "buildings": f"{URBAN} {INDOOR} coast forest mountain opencountry sea",
    "glacier": "mountain coast opencountry sea forest",
    "sea": f"coast mountain opencountry glacier {URBAN}",
    "street": f"{URBAN} store",
    "forest": "mountain opencountry suburb highway coast",
    "mountain": "opencountry coast highway forest glacier sea suburb buildings",
    "tallbuilding": URBAN,
    "insidecity": f"{URBAN} store",
    "suburb": f"{URBAN} forest mountain opencountry",
    "industrial": f"{URBAN} sea coast",
    "highway": f"{URBAN} {NATURE}",
    "coast": f"{URBAN} {NATURE}",
    "opencountry": f"{URBAN} {NATURE}",
    "store": f"{INDOOR} {URBAN}",
    "office": INDOOR,
    "kitchen": INDOOR,
    "livingroom": INDOOR,
    "bedroom": INDOOR,
}


#: A teacher's score below which a photo is taken not to show a concept its set does not annotate.
TEACHER_THRESHOLD = 0.1


def co_occurrence(concepts: list[str], table: Mapping[str, str] = MAY_CO_OCCUR) -> np.ndarray:
    """Symmetric bool ``[C, C]``: concepts ``i`` and ``j`` may appear in one photo.

    A concept the table does not name, or maps to ``*``, may co-occur with every concept; every
    concept co-occurs with itself.
    """
    return _table(concepts, table)[0]


def _table(concepts: list[str], table: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """``(may, known)``: :func:`co_occurrence`, and which pairs the table decides (both named)."""
    index = {c: i for i, c in enumerate(concepts)}
    n = len(concepts)
    may = np.eye(n, dtype=bool)
    named = np.array([c in table for c in concepts], bool)
    for i, c in enumerate(concepts):
        spec = table.get(c, EVERYWHERE)
        if spec.strip() == EVERYWHERE:
            may[i, :] = may[:, i] = True
            continue
        for other in spec.split():
            if other in index:
                may[i, index[other]] = may[index[other], i] = True
    return may, named[:, None] & named[None, :]


def merge_open_world(sets: list[LabelledImages], table: Mapping[str, str] = MAY_CO_OCCUR,
                     teacher: np.ndarray | None = None, threshold: float = TEACHER_THRESHOLD) -> LabelledImages:
    """:func:`merge`, with each set's unannotated concepts negative where its photo cannot show them.

    A photo's "own" concepts are those its set labels present or leaves unknown (VOC's
    "difficult"); a concept of another set becomes a judged negative unless it may co-occur with
    one of them. Where the table does not name both concepts, a ``teacher`` (``[rows, concepts]``
    scores of the merged rows, e.g. closed-world detectors of each concept on its own set) decides:
    below ``threshold`` the photo is a negative, else it stays unknown. Without a teacher such
    pairs stay unknown. A row with no own concept (a background frame) is negative for every
    concept its set does not annotate, unless a teacher is given, which then decides alone.
    """
    merged = merge(sets)
    if len(sets) == 1:
        return merged
    may, known = _table(merged.concepts, table)
    column = {c: i for i, c in enumerate(merged.concepts)}
    labels, mask = merged.labels.copy(), merged.mask.copy()
    start, added = 0, 0
    for s in sets:
        rows = slice(start, start + len(s))
        cols = np.array([column[c] for c in s.concepts], int)
        foreign = np.ones(len(merged.concepts), bool)
        foreign[cols] = False
        own = np.zeros((len(s), len(merged.concepts)), np.int32)
        own[:, cols] = (s.labels > 0.5) | (s.mask == 0)
        if teacher is None:
            allowed = (own @ may.astype(np.int32)) > 0  # [rows, C]: the table says it may show
            negative = foreign[None, :] & ~allowed
        else:
            allowed = (own @ (may & known).astype(np.int32)) > 0  # the table says it may show
            undecided = (own @ (~known).astype(np.int32)) > 0  # some own concept the table cannot pair
            undecided |= own.sum(1, keepdims=True) == 0
            unlikely = teacher[rows] < threshold
            negative = foreign[None, :] & ~allowed & (~undecided | unlikely)
        added += int(negative.sum())
        labels[rows][negative] = 0.0
        mask[rows][negative] = 1.0
        start += len(s)
    log.info("open-world merge of %d sets: %d cross-set negatives added", len(sets), added)
    return LabelledImages(merged.spec, merged.paths, merged.concepts, labels, mask)

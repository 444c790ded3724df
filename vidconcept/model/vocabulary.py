"""One name per idea across photo sets: renaming, merging and dropping a set's concepts.

Photo sets name the same idea differently (``sea`` in Intel scenes, ``coast`` in Scene-15 and
MiniPlaces; ``airplanes`` in Caltech-101, ``aeroplane`` in VOC) and sometimes the same spelling
means different pictures, or one set's idea is broader than another's (Scene-15's ``store``
against MiniPlaces' ``supermarket``). A model's vocabulary is therefore decided per pair **by
measurement** (:func:`measure_pair`): a closed-world LR detector of each name, trained on its own
set's photos, scores the other set's photos. A name *relates* to another when its detector ranks
the other name's photos first among that set's classes with an AP of at least
:data:`MERGE_MIN_AP`. Both ways: the **same** idea (one concept, :func:`merged_names`; the first
set's name, so the default model's 38 names stay concepts, the others become aliases). One way
only: the detector that finds the other's photos belongs to the **narrower** idea (its photos
look like the other's, while the other's detector also fires on neighbouring classes): its photos
are positives of the broader concept too (:func:`hierarchy`), and one spelling for both is one
concept. Names a set keeps out of the vocabulary (too few photos, not a visual concept) are
dropped as columns while their photos stay as negatives of the set's other concepts.

Example::

    data = rename_concepts(open_dataset("folder:../shared/data/caltech101"),
                           {"airplanes": "aeroplane", "faces": "face", "faces_easy": "face"}, keep_only=True)
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from vidconcept.data.datasets import LabelledImages

log = logging.getLogger(__name__)

#: A pair merges when each name's detector finds the other's photos with at least this AP
#: (and best among the other set's classes).
MERGE_MIN_AP = 0.5


def rename_concepts(data: LabelledImages, rename: Mapping[str, str | None], keep_only: bool = False) -> LabelledImages:
    """``data`` with its concept columns renamed; columns renamed to the same name are merged.

    A merged cell is positive when any of its sources is, judged when any is; ``None`` drops a
    column (its rows stay, as negatives of the set's other concepts); ``keep_only`` drops every
    column ``rename`` does not name.
    """
    target = [rename.get(c, None if keep_only else c) for c in data.concepts]
    names = list(dict.fromkeys(t for t in target if t is not None))
    labels = np.zeros((len(data), len(names)), np.float32)
    mask = np.zeros_like(labels)
    for j, t in enumerate(target):
        if t is None:
            continue
        k = names.index(t)
        labels[:, k] = np.maximum(labels[:, k], data.labels[:, j] * data.mask[:, j])
        mask[:, k] = np.maximum(mask[:, k], data.mask[:, j])
    return LabelledImages(data.spec, list(data.paths), names, labels, mask, data.strata, dict(data.inclusion))


@dataclass(frozen=True)
class PairMeasure:
    """How two sets' names for one idea find each other's photos (closed-world detectors)."""

    a: str  # "set/name"
    b: str
    ap_ab: float  # a's detector ranking b's set: AP of b's photos
    ap_ba: float
    best_ab: str  # the class of b's set a's detector scores highest on average
    best_ba: str

    @property
    def relation(self) -> str | None:
        """``"same"``, ``"contains"`` (``a``'s idea is broader: ``b``'s photos are also ``a``),
        ``"within"`` (the reverse) or ``None``."""
        a_finds = self.best_ab == self.b and self.ap_ab >= MERGE_MIN_AP
        b_finds = self.best_ba == self.a and self.ap_ba >= MERGE_MIN_AP
        if a_finds and b_finds:
            return "same"
        return "contains" if b_finds else "within" if a_finds else None

    @property
    def merge(self) -> bool:
        """One concept: the same idea, or a broader and a narrower one spelled alike."""
        from vidconcept.model.names import normalise

        same_spelling = normalise(self.a.split("/", 1)[1]) == normalise(self.b.split("/", 1)[1])
        return self.relation == "same" or (self.relation is not None and same_spelling)


def measure_pair(a: str, b: str, scores: Mapping[str, np.ndarray], rows: Mapping[str, np.ndarray],
                 labels: Mapping[str, np.ndarray], classes: Mapping[str, list[str]]) -> PairMeasure:
    """Measure ``a`` (``"set/name"``) against ``b`` from closed-world detector ``scores``.

    ``scores[name]`` is the detector's probability on every row; ``rows[set]`` the row indices of
    a set, ``labels[set]`` its ``[rows, classes]`` 0/1 labels, ``classes[set]`` its names.
    """
    from vidconcept.metrics.ap import average_precision

    def one_way(x: str, y: str) -> tuple[float, str]:
        target_set, target = y.split("/", 1)
        r = rows[target_set]
        s = scores[x][r]
        lab = labels[target_set]
        j = classes[target_set].index(target)
        ap = average_precision(s, lab[:, j], np.ones(len(r), np.float32))
        means = [s[lab[:, k] > 0.5].mean() if (lab[:, k] > 0.5).any() else -1.0 for k in range(lab.shape[1])]
        return float(ap), f"{target_set}/{classes[target_set][int(np.argmax(means))]}"

    ap_ab, best_ab = one_way(a, b)
    ap_ba, best_ba = one_way(b, a)
    return PairMeasure(a, b, round(ap_ab, 4), round(ap_ba, 4), best_ab, best_ba)


def merged_names(pairs: list[PairMeasure], order: list[str]) -> dict[str, str]:
    """``{"set/name": concept}`` for every name that merges: each group of merged names takes the
    name of its member whose set comes first in ``order`` (connected groups merge as one)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for p in pairs:
        if p.merge:
            parent[root(p.a)] = root(p.b)
    groups: dict[str, list[str]] = {}
    for name in parent:
        groups.setdefault(root(name), []).append(name)
    for r in list(parent.values()):
        groups.setdefault(root(r), []).append(r)
    out = {}
    for members in groups.values():
        members = sorted(set(members), key=lambda m: (order.index(m.split("/", 1)[0]), m))
        concept = members[0].split("/", 1)[1]
        out.update({m: concept for m in members})
    return out


def hierarchy(pairs: list[PairMeasure]) -> list[tuple[str, str]]:
    """``(broader, narrower)`` ``"set/name"`` pairs that stay two concepts: the narrower one's
    photos are positives of the broader one too."""
    out = []
    for p in pairs:
        if p.merge or p.relation is None:
            continue
        out.append((p.a, p.b) if p.relation == "contains" else (p.b, p.a))
    return out

"""One name per idea across photo sets: renaming, merging and dropping a set's concepts.

Photo sets name the same idea differently (``sea`` in Intel scenes, ``coast`` in Scene-15 and
MiniPlaces; ``airplanes`` in Caltech-101, ``aeroplane`` in VOC) and sometimes the same spelling
means different pictures. A model's vocabulary is therefore decided per pair **by measurement**
(:func:`decide_merges`): a closed-world LR detector of each name, trained on its own set's
photos, must find the other name's photos in the other set best among that set's classes, both
ways (a mutual best match), with an AP of at least :data:`MERGE_MIN_AP`. Merged names become one
concept (the first set's name, so the default model's 38 names stay concepts) and the others
its aliases; names a set keeps out of the vocabulary (too few photos, not a visual concept) are
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
    def merge(self) -> bool:
        return (self.best_ab == self.b and self.best_ba == self.a
                and min(self.ap_ab, self.ap_ba) >= MERGE_MIN_AP)


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

"""Concept-detection metrics: average precision, mean AP and TRECVID inferred AP.

* AP is non-interpolated average precision over the *judged* images of a concept
  (unknown labels are skipped): the mean of precision@k over the ranks k of the
  positives, i.e. sklearn's ``average_precision_score`` on the judged rows (ties are
  broken by a stable sort, so scores should be continuous).
* Inferred AP follows TRECVID's ``sample_eval`` (Yilmaz, Kanoulas & Aslam, "A simple and
  efficient sampling method for estimating AP and NDCG", SIGIR 2008): images of a pool
  are split into strata sampled with inclusion probabilities; the expected precision
  above each sampled positive is estimated per stratum and each positive is weighted by
  1/p. With complete judgments (p = 1 everywhere) it equals AP.

Example::

    average_precision(np.array([0.9, 0.2, 0.7]), np.array([1, 0, 1]))   # 1.0
    metric_table("ap", scores, labels, mask, concepts)["map"]
"""
from __future__ import annotations

import numpy as np

from vidconcept.errors import UsageError
from vidconcept.metrics.calibration import expected_calibration_error

#: Smoothing of per-stratum precision estimates, as in sample_eval.
INFAP_EPSILON = 1e-5
METRICS = ("ap", "infap")


def average_precision(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Non-interpolated AP of ``scores`` against 1/0 ``labels`` over judged rows; NaN without positives."""
    if mask is not None:
        judged = mask > 0
        scores, labels = scores[judged], labels[judged]
    positives = labels > 0.5
    if not positives.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = positives[order]
    precision_at_k = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at_k[hits].mean())


def inferred_average_precision(scores: np.ndarray, labels: np.ndarray, judged: np.ndarray,
                               strata: np.ndarray, inclusion: dict[int, float]) -> float:
    """Stratified inferred AP (xinfAP, the estimator of TRECVID ``sample_eval``).

    Args:
        scores: ``[N]`` scores of every image in the collection.
        labels: ``[N]`` 1/0 labels, meaningful where ``judged``.
        judged: ``[N]`` bool, the sampled (judged) images.
        strata: ``[N]`` stratum of each image; -1 = not pooled (taken as negative).
        inclusion: sampling probability of each stratum.
    """
    order = np.argsort(-scores, kind="stable")
    labels, judged, strata = labels[order] > 0.5, judged[order].astype(bool), strata[order]
    rel_sampled = labels & judged
    estimated_relevant = sum(rel_sampled[strata == s].sum() / p for s, p in inclusion.items() if p > 0)
    if estimated_relevant == 0:
        return float("nan")
    ranks = np.arange(1, len(order) + 1)
    expected_above = np.zeros(len(order))
    for s in inclusion:
        in_s = strata == s
        above = np.cumsum(in_s) - in_s  # pooled images of s strictly above each rank
        sampled_above = np.cumsum(in_s & judged) - (in_s & judged)
        rel_above = np.cumsum(in_s & rel_sampled) - (in_s & rel_sampled)
        precision_s = (rel_above + INFAP_EPSILON) / (sampled_above + 2 * INFAP_EPSILON)
        expected_above += above * precision_s
    k = ranks.astype(float)
    expected_precision = 1.0 / k + expected_above / k  # = 1/k + (k-1)/k * Σ_s |above_s|/(k-1) * prec_s
    weights = np.array([1.0 / inclusion[s] if s in inclusion and inclusion[s] > 0 else 0.0 for s in strata])
    return float((expected_precision * weights)[rel_sampled].sum() / estimated_relevant)


def concept_metric(metric: str, scores: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                   strata: np.ndarray | None, inclusion: dict[int, float]) -> float:
    """One concept's AP or inferred AP.

    Without explicit strata, inferred AP treats the whole set as one stratum sampled with
    probability judged/N (uniform random judging, Yilmaz & Aslam 2006).
    """
    if metric == "ap":
        return average_precision(scores, labels, mask)
    judged = mask > 0
    if strata is None:
        strata, inclusion = np.zeros(len(scores), int), {0: float(judged.mean()) if len(judged) else 0.0}
    return inferred_average_precision(scores, labels, judged, strata, inclusion)


def metric_table(metric: str, scores: np.ndarray, labels: np.ndarray, mask: np.ndarray, concepts: list[str],
                 strata: np.ndarray | None = None, inclusion: dict[int, float] | None = None) -> dict:
    """``{"map": …, "ap": {concept: …}, "ece": …}`` over the concepts with at least one judged positive.

    ``ece``: expected calibration error of the scores over all judged (image, concept) pairs
    (:func:`vidconcept.model.calibration.expected_calibration_error`, 10 equal-width bins).
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    per_concept = {}
    for c, concept in enumerate(concepts):
        value = concept_metric(metric, scores[:, c], labels[:, c], mask[:, c], strata, inclusion or {})
        if not np.isnan(value):
            per_concept[concept] = round(value, 6)
    mean = float(np.mean(list(per_concept.values()))) if per_concept else float("nan")
    return {"map": round(mean, 6), "ap": per_concept, "ece": round(expected_calibration_error(scores, labels, mask), 6)}

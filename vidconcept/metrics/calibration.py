"""Calibration metrics: reliability bins and expected calibration error (Guo et al., ICML 2017)."""
from __future__ import annotations

import numpy as np


#: Equal-width bins of the score over [0, 1] used by :func:`expected_calibration_error`.
ECE_BINS = 10


def reliability(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None,
                bins: int = ECE_BINS) -> dict[str, list]:
    """Per equal-width bin over [0, 1]: pair count, mean score and positive rate (judged pairs pooled)."""
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels).ravel() > 0.5
    if mask is not None:
        judged = np.asarray(mask).ravel() > 0
        scores, labels = scores[judged], labels[judged]
    which = np.minimum((scores * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    total = np.bincount(which, weights=scores, minlength=bins)
    hits = np.bincount(which, weights=labels.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"count": count.tolist(), "mean_score": (total / count).tolist(), "positive_rate": (hits / count).tolist()}


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None,
                               bins: int = ECE_BINS) -> float:
    """ECE over judged pairs: Σ_bins (n_bin / n) · |mean score − positive rate| (equal-width bins); NaN when empty."""
    table = reliability(scores, labels, mask, bins)
    count = np.array(table["count"], float)
    if not count.sum():
        return float("nan")
    gap = np.abs(np.nan_to_num(np.array(table["mean_score"])) - np.nan_to_num(np.array(table["positive_rate"])))
    return float((count * gap).sum() / count.sum())

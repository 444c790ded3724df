"""Per-concept score calibration: a stored score is the probability that the shot shows the concept.

Fused LR scores (the mean of three layers' probabilities) rank well but are not
probabilities: a concept learned against a closed choice of photos claims 0.9 on frames it
never saw the like of. A monotone map per concept, fitted on *held-out* scores (out-of-fold
predictions of the detectors, background pool included), turns them into probabilities:

* ``platt``: ``p = sigmoid(a · logit(s) + b)`` (Platt 1999), two numbers per concept;
  strictly increasing, so the ranking and AP do not change.
* ``isotonic``: a non-decreasing step function (scikit-learn's ``IsotonicRegression``),
  stored as knots and interpolated; it can tie scores, which may move AP a little.

:func:`choose_method` picks between them by expected calibration error on a held-out half.
:func:`expected_calibration_error` is the usual ECE: judged (image, concept) pairs pooled,
:data:`ECE_BINS` equal-width bins of the score over [0, 1], the bins' |mean score −
positive rate| weighted by their share of pairs. Example::

    cal = fit_calibration(oof_scores, labels, mask, "platt")
    probabilities = cal.apply(scores)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidconcept.errors import ModelError, UsageError
from vidconcept.logistic import fit_platt, sigmoid
from vidconcept.metrics.calibration import ECE_BINS, expected_calibration_error, reliability  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

METHODS = ("platt", "isotonic")
#: Below this many judged positives (or negatives) a concept keeps its scores as they are.
MIN_CLASS = 3
_EPS = 1e-6


@dataclass
class Calibration:
    """Monotone per-concept maps from raw scores to probabilities.

    Attributes:
        method: ``"platt"`` or ``"isotonic"``.
        a, b: Platt slope and offset per concept ``[C]`` (identity: a = 1, b = 0).
        knots_x, knots_y: isotonic knots per concept ``[C, K]`` (NaN-padded; an all-NaN row
            is the identity).
    """

    method: str
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    knots_x: np.ndarray | None = None
    knots_y: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.a) if self.method == "platt" else len(self.knots_x)

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Probabilities ``[N, C]`` for raw scores ``[N, C]``."""
        scores = np.asarray(scores, np.float32)
        if scores.shape[-1] != self.size:
            raise ModelError(f"calibration has {self.size} concepts but scores have {scores.shape[-1]} columns")
        if self.method == "platt":
            return sigmoid(self.a * _logit(scores) + self.b)
        out = scores.copy()
        for j in range(self.size):
            keep = ~np.isnan(self.knots_x[j])
            if keep.any():
                out[:, j] = np.interp(scores[:, j], self.knots_x[j, keep], self.knots_y[j, keep])
        return out.astype(np.float32)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _enough(y: np.ndarray) -> bool:
    return int(y.sum()) >= MIN_CLASS and int((~y).sum()) >= MIN_CLASS


def _judged_columns(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray):
    """``(j, judged scores, their labels)`` of each concept with enough judged rows of both classes."""
    for j in range(scores.shape[1]):
        judged = mask[:, j] > 0
        y = labels[judged, j] > 0.5
        if _enough(y):
            yield j, (scores[judged, j], y)


def fit_calibration(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray, method: str = "platt") -> Calibration:
    """One monotone map per concept, fitted on the judged rows of held-out ``scores`` ``[N, C]``.

    A concept with fewer than :data:`MIN_CLASS` judged positives or negatives keeps the identity.
    """
    from sklearn.isotonic import IsotonicRegression

    if method not in METHODS:
        raise UsageError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    n_concepts = scores.shape[1]
    if method == "platt":
        a, b = np.ones(n_concepts, np.float32), np.zeros(n_concepts, np.float32)
        for j, (x, y) in _judged_columns(scores, labels, mask):
            a[j], b[j] = fit_platt(_logit(x), y)
        return Calibration("platt", a=a, b=b)
    columns = [(np.empty(0), np.empty(0))] * n_concepts
    for j, (x, y) in _judged_columns(scores, labels, mask):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y.astype(float))
        columns[j] = (iso.X_thresholds_, iso.y_thresholds_)
    width = max([len(x) for x, _ in columns] + [1])
    kx = np.full((n_concepts, width), np.nan, np.float32)
    ky = np.full_like(kx, np.nan)
    for j, (x, y) in enumerate(columns):
        kx[j, :len(x)], ky[j, :len(y)] = x, y
    return Calibration("isotonic", knots_x=kx, knots_y=ky)


def choose_method(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray, seed: int = 0) -> tuple[str, dict[str, float]]:
    """The method of :data:`METHODS` with the lower ECE when fitted on one half of the rows and measured on the other
    (both ways, averaged). Returns the method and each method's ECE."""
    half = np.random.default_rng(seed).permutation(len(scores)) % 2 == 0
    result = {}
    for method in METHODS:
        eces = []
        for fit_rows in (half, ~half):
            cal = fit_calibration(scores[fit_rows], labels[fit_rows], mask[fit_rows], method)
            eces.append(expected_calibration_error(cal.apply(scores[~fit_rows]), labels[~fit_rows], mask[~fit_rows]))
        result[method] = round(float(np.mean(eces)), 6)
    return min(result, key=result.get), result


def save_calibration(path: Path, calibration: Calibration) -> None:
    arrays = {"method": np.array(calibration.method)}
    for key in ("a", "b", "knots_x", "knots_y"):
        value = getattr(calibration, key)
        if value is not None:
            arrays[key] = value
    np.savez_compressed(path, **arrays)


def load_calibration(path: Path) -> Calibration:
    if not Path(path).is_file():
        raise ModelError(f"calibration file {path} is missing from the bundle (remove 'calibration' from its "
                         "config.json to use uncalibrated scores)")
    with np.load(path) as data:
        return Calibration(str(data["method"]), **{k: data[k] for k in ("a", "b", "knots_x", "knots_y") if k in data.files})

"""Per-concept logistic-regression detectors on layer outputs, and their late fusion.

Following Pittaras et al. (MMM 2017), each concept gets one logistic regression (the
head of :mod:`vidconcept.logistic`) per layer among the network's last three layers
(:attr:`ConceptNet.lr_layers`); the fused score is the arithmetic mean of the three
probabilities. Only the numbers needed at prediction time are kept (standardisation,
coefficients, intercepts), so a bundle stores them compactly in one ``.npz``.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidconcept.errors import UsageError
from vidconcept.logistic import fit_logistic_many, sigmoid

log = logging.getLogger(__name__)

#: The C the detectors are fitted with when none is given (``--detector-c``): scikit-learn's default and
#: the paper's setting, passed to the LR head explicitly (the head's own default, ``vidconcept.logistic.LR_C``,
#: is what user concepts measured best). A bundle records the C each layer used (``config.json`` ``detectors.c``).
DETECTOR_C = 1.0
#: C values tried for a layer when its C is chosen by cross-validation (``c="cv"``): from
#: strong regularisation up to sklearn's default, never weaker.
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
#: Folds of that cross-validation.
CV_FOLDS = 3


@dataclass
class LayerDetectors:
    """Linear detectors of every concept on one layer: ``sigmoid(((x - mean) / scale) @ coef.T + intercept)``."""

    layer: str
    mean: np.ndarray       # [D]
    scale: np.ndarray      # [D]
    coef: np.ndarray       # [C, D]
    intercept: np.ndarray  # [C]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``[N, C]`` for layer outputs ``x`` ``[N, D]``."""
        return sigmoid(((x - self.mean) / self.scale) @ self.coef.T + self.intercept)


def cv_folds(n: int, folds: int, seed: int):
    """Held-out row masks of a random ``folds``-fold split of ``n`` rows (a fold holding all rows or
    none, with fewer rows than folds, is skipped)."""
    fold = np.random.default_rng(seed).permutation(n) % folds
    for k in range(folds):
        held = fold == k
        if held.any() and not held.all():
            yield k, held


def fit_layer(layer: str, x: np.ndarray, labels: np.ndarray, mask: np.ndarray, seed: int = 0,
              n_jobs: int | None = None, c: float | None = None) -> LayerDetectors:
    """Fit one LR per concept on the judged rows (``mask``) of ``x``, standardised.

    ``c`` is the inverse regularisation strength (default :data:`DETECTOR_C`). All concepts are
    fitted at once (:func:`vidconcept.logistic.fit_logistic_many`: scikit-learn's objective per
    concept, solved jointly), which keeps a pool of hundreds of concepts to seconds per layer.
    A concept with only one judged class cannot be separated: it gets a zero weight vector and
    the log-odds of its positive rate, so it scores as its prior. ``seed`` and ``n_jobs`` are
    kept for callers; the fit is deterministic and does not depend on them.
    """
    mean = x.mean(0)
    scale = x.std(0) + 1e-6
    xs = ((x - mean) / scale).astype(np.float32)
    c = DETECTOR_C if c is None else c
    coef, intercept = fit_logistic_many(xs, labels, mask, c)
    return LayerDetectors(layer, mean.astype(np.float32), scale.astype(np.float32), coef, intercept)


def choose_c(x: np.ndarray, labels: np.ndarray, mask: np.ndarray, seed: int = 0, n_jobs: int | None = None,
             grid: tuple[float, ...] = C_GRID, folds: int = CV_FOLDS) -> tuple[float, dict[float, float]]:
    """The C of :data:`grid` with the best ``folds``-fold cross-validated MAP on these rows.

    Why: sklearn's C = 1 under-regularises wide layers (1280 pooled features against ~100
    positives a scene concept); the best C differs by layer, so each layer gets its own,
    chosen on the training photos only. MAP is the mean over concepts of their mean AP over the
    folds that judge a positive. Returns the chosen C and every C's MAP; with too few photos to
    measure any AP it returns :data:`DETECTOR_C`.
    """
    from vidconcept.metrics.ap import average_precision

    scores: dict[float, float] = {}
    for c in grid:
        aps = np.full((folds, labels.shape[1]), np.nan)
        for k, held in cv_folds(len(x), folds, seed):
            p = fit_layer("cv", x[~held], labels[~held], mask[~held], seed, n_jobs, c).predict(x[held])
            aps[k] = [average_precision(p[:, j], labels[held, j], mask[held, j]) for j in range(labels.shape[1])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: concepts no fold can score
            scores[c] = float(np.nanmean(np.nanmean(aps, axis=0)))
    measured = {c: v for c, v in scores.items() if np.isfinite(v)}
    if not measured:
        log.warning("too few photos to cross-validate the LR detectors' C: using %s", DETECTOR_C)
        return DETECTOR_C, scores
    return max(measured, key=measured.get), scores


def fit_layers(outputs: dict[str, np.ndarray], labels: np.ndarray, mask: np.ndarray,
               c: float | str | dict[str, float] | None = None,
               seed: int = 0) -> tuple[list[LayerDetectors], dict[str, float]]:
    """Detectors for every layer of ``outputs``, and the C each used (``c="cv"``: :func:`choose_c` per layer;
    a dict: each layer's own C, :data:`DETECTOR_C` for a layer it does not name)."""
    detectors, used = [], {}
    for name, x in outputs.items():
        if isinstance(c, dict):
            used[name] = float(c.get(name, DETECTOR_C))
        elif c == "cv":
            used[name], cv = choose_c(x, labels, mask, seed)
            log.info("LR detectors on %s: C = %s by %d-fold CV (MAP %s)", name, used[name], CV_FOLDS,
                     {k: round(v, 4) for k, v in cv.items()})
        else:
            used[name] = DETECTOR_C if c is None else float(c)
        detectors.append(fit_layer(name, x, labels, mask, seed, c=used[name]))
    return detectors, used


def parse_c(value: str | float | dict | None) -> float | str | dict[str, float] | None:
    """``"cv"``, a positive number, per-layer numbers (``"features=0.03,ext1=0.1"`` or a dict) or ``None``
    (the default), as given on a command line or to the API."""
    if value is None or value == "cv":
        return value
    if isinstance(value, str) and "=" in value:
        value = dict(part.split("=", 1) for part in value.split(",") if part.strip())
    if isinstance(value, dict):
        return {str(layer).strip(): parse_c(c) for layer, c in value.items()}
    try:
        c = float(value)
    except (TypeError, ValueError):
        c = float("nan")
    if not c > 0 or not np.isfinite(c):
        raise UsageError(f"the LR detectors' C must be 'cv' or a positive number, got {value!r}")
    return c


def fuse(probabilities: list[np.ndarray]) -> np.ndarray:
    """Late fusion: the arithmetic mean of the per-layer probabilities."""
    return np.mean(np.stack(probabilities), axis=0).astype(np.float32)


def save_detectors(path: Path, detectors: list[LayerDetectors]) -> None:
    """Write all layers' detectors into one compressed ``.npz`` (fp32, a few MB at most)."""
    arrays = {}
    for i, d in enumerate(detectors):
        for key in ("mean", "scale", "coef", "intercept"):
            arrays[f"{i}/{key}"] = getattr(d, key)
        arrays[f"{i}/layer"] = np.array(d.layer)
    np.savez_compressed(path, **arrays)


def load_detectors(path: Path) -> list[LayerDetectors]:
    """Read the detectors written by :func:`save_detectors`, in their stored order."""
    with np.load(path) as data:
        count = len({k.split("/")[0] for k in data.files})
        return [LayerDetectors(str(data[f"{i}/layer"]), *(data[f"{i}/{k}"] for k in ("mean", "scale", "coef", "intercept")))
                for i in range(count)]


def out_of_fold_fused(outputs: dict[str, np.ndarray], labels: np.ndarray, mask: np.ndarray, c: dict[str, float],
                      seed: int = 0, folds: int = CV_FOLDS, n_jobs: int | None = None) -> np.ndarray:
    """Fused scores ``[N, C]`` of every row by detectors fitted without it (``folds``-fold).

    Why: calibration must be fitted on scores of photos the detectors did not see; in-sample
    scores of a 1280-d LR are near 0 or 1. ``c``: the C of each layer (as :func:`fit_layers` used).
    """
    fused = np.zeros(labels.shape, np.float32)
    for _, held in cv_folds(len(labels), folds, seed + 1):
        probabilities = [fit_layer(name, x[~held], labels[~held], mask[~held], seed, n_jobs, c.get(name, DETECTOR_C)).predict(x[held])
                         for name, x in outputs.items()]
        fused[held] = fuse(probabilities)
    return fused

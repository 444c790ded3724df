"""Per-concept logistic-regression detectors on layer outputs, and their late fusion.

Following Pittaras et al. (MMM 2017), each concept gets one scikit-learn
``LogisticRegression`` per layer among the network's last three layers
(:attr:`ConceptNet.lr_layers`); the fused score is the arithmetic mean of the three
probabilities. Only the numbers needed at prediction time are kept (standardisation,
coefficients, intercepts), so a bundle stores them compactly in one ``.npz``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Inverse regularisation strength of the LR detectors (sklearn's default).
LR_C = 1.0


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
        z = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)


def _fit_one(xs: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """One concept's LR (a constant prior when only one class is judged)."""
    from sklearn.linear_model import LogisticRegression

    if y.all() or not y.any():
        p = np.clip(y.mean() if y.size else 0.5, 1e-4, 1 - 1e-4)
        return np.zeros(xs.shape[1], np.float32), float(np.log(p / (1 - p)))
    lr = LogisticRegression(C=LR_C, max_iter=1000, random_state=seed).fit(xs, y)
    return lr.coef_[0], float(lr.intercept_[0])


def fit_layer(layer: str, x: np.ndarray, labels: np.ndarray, mask: np.ndarray, seed: int = 0,
              n_jobs: int | None = None) -> LayerDetectors:
    """Fit one LR per concept on the judged rows (``mask``) of ``x``.

    A concept with only one judged class cannot be separated: it gets a zero weight vector
    and the log-odds of its positive rate, so it scores as its prior. Concepts are fitted in
    parallel processes when the machine has more than two cores (``n_jobs``: joblib's
    meaning; default: all cores there, one process on smaller machines, where BLAS threads
    already use them); the result does not depend on it.
    """
    import os

    from joblib import Parallel, delayed

    mean = x.mean(0)
    scale = x.std(0) + 1e-6
    xs = ((x - mean) / scale).astype(np.float32)
    if n_jobs is None:
        n_jobs = -1 if (os.cpu_count() or 1) > 2 else 1
    jobs = (delayed(_fit_one)(xs[mask[:, c] > 0], labels[mask[:, c] > 0, c] > 0.5, seed)
            for c in range(labels.shape[1]))
    fitted = Parallel(n_jobs=n_jobs)(jobs)
    coef = np.stack([c for c, _ in fitted]).astype(np.float32) if fitted else np.zeros((0, x.shape[1]), np.float32)
    intercept = np.array([b for _, b in fitted], np.float32)
    return LayerDetectors(layer, mean.astype(np.float32), scale.astype(np.float32), coef, intercept)


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

"""The one logistic-regression head: the model's concept detectors (one LR per concept and
layer, :mod:`vidconcept.model.detectors`), user concepts (:mod:`vidconcept.index.user_concepts`)
and Platt scaling (:mod:`vidconcept.model.calibration`) fit and apply their linear maps here, so
the solver, its settings and the default regularisation are decided once.

Example::

    coef, intercept = fit_logistic(x, y)            # C = LR_C (3)
    p = sigmoid(x @ coef + intercept)
    a, b = fit_platt(z, y)                          # p = sigmoid(a * z + b)
"""
from __future__ import annotations

import numpy as np

#: Inverse regularisation strength of an LR head whose caller passes none: what user concepts (a few
#: labelled shots, L2-normalised features) measured best, C = 3 against C = 1 on held-out photos
#: (``benchmarks/concept_on_demand.py --c 1`` / ``--c 3``; docs/user-concepts.md has the numbers).
#: The model's detectors pass their own (``model.detectors.DETECTOR_C``, the paper's C = 1, or a C
#: per layer by cross-validation) and their bundle records it.
LR_C = 3.0
#: Platt scaling fits two numbers on thousands of rows: practically unregularised.
PLATT_C = 1e4
MAX_ITER = 1000


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` as float32, without overflow warnings for large ``|z|``."""
    return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)


def logistic(c: float = LR_C, *, balanced: bool = False, seed: int = 0):
    """The scikit-learn estimator every head is (for cross-validation; :func:`fit_logistic` fits one).

    ``balanced`` weighs the classes equally (user concepts: a few positives among many negatives).
    """
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced" if balanced else None, max_iter=MAX_ITER,
                              random_state=seed)


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = LR_C, *, balanced: bool = False,
                 seed: int = 0) -> tuple[np.ndarray, float]:
    """``(coef [D] float32, intercept)`` of an LR on rows ``x`` and boolean labels ``y``.

    Rows of one class only cannot be separated: zero weights and the log-odds of the positive
    rate (clipped), so the head scores as its prior.
    """
    y = np.asarray(y, bool)
    if y.all() or not y.any():
        p = np.clip(y.mean() if y.size else 0.5, 1e-4, 1 - 1e-4)
        return np.zeros(x.shape[1], np.float32), float(np.log(p / (1 - p)))
    lr = logistic(c, balanced=balanced, seed=seed).fit(x, y)
    return lr.coef_[0].astype(np.float32), float(lr.intercept_[0])


def fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of Platt scaling ``sigmoid(a * z + b)`` for scores ``z`` (log-odds) and labels ``y``."""
    lr = logistic(PLATT_C).fit(np.asarray(z).reshape(-1, 1), np.asarray(y, bool))
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def fit_logistic_many(x: np.ndarray, labels: np.ndarray, mask: np.ndarray, c: float = LR_C,
                      max_iter: int = MAX_ITER, tol: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """``(coef [C, D], intercept [C])``: one LR per label column, each on its judged rows (``mask``).

    The same objective as :func:`fit_logistic` per column (``½‖w‖² + c · Σ logloss``, intercept not
    penalised), minimised for all columns at once by full-batch L-BFGS in torch: the columns are
    independent, so the joint minimum is each one's. Why: a concept pool of hundreds fitted one
    scikit-learn model at a time costs minutes per layer on a 2-core CPU; here each step is two
    matrix products over every column. Columns with one judged class get zero weights and the
    clipped log-odds of their positive rate, as :func:`fit_logistic` gives them.
    """
    import torch

    x = np.asarray(x, np.float32)
    judged = np.asarray(mask) > 0
    y = (np.asarray(labels) > 0.5) & judged
    positives, counts = y.sum(0), judged.sum(0)
    separable = (positives > 0) & (positives < counts)
    coef = np.zeros((labels.shape[1], x.shape[1]), np.float32)
    prior = np.clip(np.where(counts > 0, positives / np.maximum(counts, 1), 0.5), 1e-4, 1 - 1e-4)
    intercept = np.log(prior / (1 - prior)).astype(np.float32)
    cols = np.flatnonzero(separable)
    if not len(cols):
        return coef, intercept
    xt = torch.from_numpy(x).double()
    yt = torch.from_numpy(y[:, cols].astype(np.float64))
    mt = torch.from_numpy(judged[:, cols].astype(np.float64))
    # scikit-learn's scaling (mean log-loss + ‖w‖² / 2cN): the same minimum, and ``tol`` means what its ``tol`` does
    scale = 1.0 / (c * len(x))
    w = torch.zeros(x.shape[1], len(cols), dtype=torch.float64, requires_grad=True)
    b = torch.from_numpy(intercept[cols].astype(np.float64)).requires_grad_(True)
    optimizer = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=tol,
                                  tolerance_change=1e-10, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        z = xt @ w + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(z, yt, reduction="none") * mt).sum()
        total = scale * (0.5 * (w * w).sum() + c * loss)
        total.backward()
        return total

    optimizer.step(closure)
    coef[cols] = w.detach().numpy().T
    intercept[cols] = b.detach().numpy()
    return coef, intercept

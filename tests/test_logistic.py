"""The one LR head (vidconcept.logistic): model detectors, user concepts and Platt scaling fit through it."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from vidconcept import logistic
from vidconcept.logistic import LR_C, fit_logistic, fit_platt, sigmoid


def _data(seed: int = 0, n: int = 300, d: int = 8):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = x @ rng.normal(size=d) + rng.normal(scale=0.5, size=n) > 0.8
    return x, y


def test_fit_logistic_separates_and_one_class_scores_as_its_prior():
    x, y = _data()
    coef, intercept = fit_logistic(x, y)
    p = sigmoid(x @ coef + intercept)
    assert coef.dtype == np.float32 and p.dtype == np.float32
    assert p[y].mean() > 0.7 > 0.3 > p[~y].mean()
    coef, intercept = fit_logistic(x, np.zeros(len(x), bool))
    assert not coef.any() and sigmoid(np.array([intercept]))[0] == pytest.approx(1e-4, rel=1e-3)


def test_fit_platt_recovers_a_known_map():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=3, size=20_000)
    y = rng.random(len(z)) < sigmoid(0.5 * z - 1.0)
    a, b = fit_platt(z, y)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1.0, abs=0.1)


def _objective(x, y, coef, intercept, c):
    z = x @ coef + intercept
    return 0.5 * float(coef @ coef) + c * float(np.sum(np.logaddexp(0, z) - y * z))


def test_model_detectors_and_user_concepts_share_the_head():
    """One head: a model detector minimises the head's objective on standardised rows (solved for all
    concepts at once, so equal up to the solvers' tolerance), a user concept's detector is the head
    with its classes balanced; user concepts take the head's default C, the detectors pass theirs."""
    from vidconcept.concepts import fit_detector
    from vidconcept.model.detectors import DETECTOR_C, fit_layer

    assert inspect.signature(fit_detector).parameters["c"].default == LR_C
    x, y = _data(2)
    for c, given in ((DETECTOR_C, None), (LR_C, LR_C)):
        layer = fit_layer("features", x, y[:, None].astype(np.float32), np.ones((len(x), 1), np.float32), n_jobs=1,
                          c=given)
        xs = (x - layer.mean) / layer.scale
        coef, intercept = fit_logistic(xs, y, c)
        ours, sklearns = _objective(xs, y, layer.coef[0], layer.intercept[0], c), _objective(xs, y, coef, intercept, c)
        assert ours == pytest.approx(sklearns, rel=1e-4)
        np.testing.assert_allclose(sigmoid(xs @ layer.coef[0] + layer.intercept[0]), sigmoid(xs @ coef + intercept),
                                   atol=5e-3)
    user = fit_detector(x[y], x[~y])
    coef, intercept = fit_logistic(np.concatenate([x[y], x[~y]]), np.arange(len(x)) < y.sum(), balanced=True)
    np.testing.assert_allclose(user.coef, coef, rtol=1e-6)
    assert user.intercept == pytest.approx(intercept)
    assert logistic.logistic().C == LR_C


def test_many_heads_at_once_match_one_at_a_time():
    """fit_logistic_many: each column on its judged rows, the same minimum as fit_logistic; a column
    with one judged class scores as its prior."""
    from vidconcept.logistic import fit_logistic_many

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    labels = (x[:, :3] + rng.normal(size=(300, 3)) > 0.5).astype(np.float32)
    labels = np.concatenate([labels, np.zeros((300, 1), np.float32)], 1)
    mask = (rng.random((300, 4)) > 0.3).astype(np.float32)
    for c in (0.05, 1.0):
        coef, intercept = fit_logistic_many(x, labels, mask, c)
        for j in range(3):
            m = mask[:, j] > 0
            w, b = fit_logistic(x[m], labels[m, j] > 0.5, c)
            y = labels[m, j]
            assert _objective(x[m], y, coef[j], intercept[j], c) <= _objective(x[m], y, w, b, c) * (1 + 1e-4)
            # rows outside the mask change nothing: a label flipped there leaves the fit as it is
        flipped = labels.copy()
        flipped[mask[:, 0] == 0, 0] = 1 - flipped[mask[:, 0] == 0, 0]
        np.testing.assert_allclose(fit_logistic_many(x, flipped, mask, c)[0][0], coef[0], atol=1e-4)
        assert not coef[3].any() and intercept[3] == pytest.approx(np.log(1e-4 / (1 - 1e-4)), rel=1e-3)

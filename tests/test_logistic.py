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


def test_model_detectors_and_user_concepts_share_the_head():
    """One head: a model detector is the head on standardised rows, a user concept's detector the head
    with its classes balanced; user concepts take the head's default C, the detectors pass theirs."""
    from vidconcept.concepts import fit_detector
    from vidconcept.model.detectors import DETECTOR_C, fit_layer

    assert inspect.signature(fit_detector).parameters["c"].default == LR_C
    x, y = _data(2)
    for c, given in ((DETECTOR_C, None), (LR_C, LR_C)):
        layer = fit_layer("features", x, y[:, None].astype(np.float32), np.ones((len(x), 1), np.float32), n_jobs=1,
                          c=given)
        coef, intercept = fit_logistic((x - layer.mean) / layer.scale, y, c)
        np.testing.assert_allclose(layer.coef[0], coef, rtol=1e-5, atol=1e-6)
    user = fit_detector(x[y], x[~y])
    coef, intercept = fit_logistic(np.concatenate([x[y], x[~y]]), np.arange(len(x)) < y.sum(), balanced=True)
    np.testing.assert_allclose(user.coef, coef, rtol=1e-6)
    assert user.intercept == pytest.approx(intercept)
    assert logistic.logistic().C == LR_C

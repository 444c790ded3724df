"""Calibrated scores, cross-set negatives and concept aliases, on small fixtures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidconcept.data import LabelledImages
from vidconcept.data.open_world import co_occurrence, merge_open_world
from vidconcept.evaluate import average_precision
from vidconcept.model.calibration import (Calibration, choose_method, expected_calibration_error, fit_calibration,
                                          load_calibration, reliability, save_calibration)
from vidconcept.model.names import aliases_for, resolve


def overconfident(n: int = 4000, concepts: int = 3, seed: int = 0):
    """Labels drawn with probability sigmoid(z); a detector that reports sigmoid(4 z + 1): too sure, too high."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, concepts))
    labels = (rng.random((n, concepts)) < 1 / (1 + np.exp(-z))).astype(np.float32)
    scores = (1 / (1 + np.exp(-(4 * z + 1)))).astype(np.float32)
    return scores, labels, np.ones_like(labels)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_brings_an_overconfident_detector_down_to_a_small_ece(method):
    scores, labels, mask = overconfident()
    fit, held = slice(0, 2000), slice(2000, None)
    before = expected_calibration_error(scores[held], labels[held], mask[held])
    cal = fit_calibration(scores[fit], labels[fit], mask[fit], method)
    after = expected_calibration_error(cal.apply(scores[held]), labels[held], mask[held])
    assert before > 0.1 and after < 0.03


def test_platt_keeps_the_ranking_and_unjudged_rows_do_not_count():
    scores, labels, mask = overconfident(concepts=2)
    mask[:, 1] = 0  # nothing judged for concept 1: it keeps its scores
    cal = fit_calibration(scores, labels, mask, "platt")
    out = cal.apply(scores)
    assert average_precision(out[:, 0], labels[:, 0]) == pytest.approx(average_precision(scores[:, 0], labels[:, 0]))
    np.testing.assert_allclose(out[:, 1], scores[:, 1], atol=1e-5)


def test_ece_and_reliability_bins():
    scores = np.array([0.05, 0.05, 0.95, 0.95])
    labels = np.array([0, 0, 1, 1])
    assert expected_calibration_error(scores, labels) == pytest.approx(0.05)
    table = reliability(scores, labels, bins=10)
    assert table["count"][0] == 2 and table["count"][9] == 2 and table["positive_rate"][9] == 1.0
    assert np.isnan(expected_calibration_error(scores, labels, np.zeros(4)))


def test_choose_method_measures_both_on_held_out_halves():
    scores, labels, mask = overconfident()
    method, eces = choose_method(scores, labels, mask)
    assert set(eces) == {"platt", "isotonic"} and eces[method] == min(eces.values()) and max(eces.values()) < 0.05


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_file_round_trips(tmp_path, method):
    scores, labels, mask = overconfident(n=600)
    cal = fit_calibration(scores, labels, mask, method)
    save_calibration(tmp_path / "c.npz", cal)
    again = load_calibration(tmp_path / "c.npz")
    assert isinstance(again, Calibration) and again.method == method
    np.testing.assert_array_equal(again.apply(scores), cal.apply(scores))


# ---- cross-set negatives --------------------------------------------------------------------------
def _set(spec: str, concepts: list[str], labels: list[list[float]], mask: list[list[float]] | None = None):
    lab = np.array(labels, np.float32)
    return LabelledImages(spec, [Path(f"{spec}-{i}.jpg") for i in range(len(lab))], concepts, lab,
                          np.ones_like(lab) if mask is None else np.array(mask, np.float32))


def test_open_world_merge_marks_what_a_photo_cannot_show_as_negative():
    objects = _set("voc", ["person", "sofa"], [[0, 1], [1, 0], [0, 0]], mask=[[1, 1], [1, 1], [1, 0]])
    scenes = _set("scenes", ["glacier", "livingroom"], [[1, 0], [0, 1]])
    data = merge_open_world([objects, scenes])
    col = {c: i for i, c in enumerate(data.concepts)}
    judged = lambda row, c: (data.mask[row, col[c]], data.labels[row, col[c]])  # noqa: E731
    # a sofa photo: a negative for glacier, unknown for livingroom (a sofa may stand in one)
    assert judged(0, "glacier") == (1, 0) and judged(0, "livingroom") == (0, 0)
    # a person photo: a person may be almost anywhere (not on a glacier, the table says)
    assert judged(1, "glacier") == (1, 0) and judged(1, "livingroom") == (0, 0)
    # a "difficult" sofa counts as a sofa that may be there
    assert judged(2, "glacier") == (1, 0) and judged(2, "livingroom") == (0, 0)
    # a glacier photo: no sofa, no person; a living room: perhaps both
    assert judged(3, "sofa") == (1, 0) and judged(3, "person") == (1, 0)
    assert judged(4, "sofa") == (0, 0) and judged(4, "person") == (0, 0)
    # each set's own labels are untouched
    np.testing.assert_array_equal(data.labels[3:, [col["glacier"], col["livingroom"]]], scenes.labels)
    np.testing.assert_array_equal(data.mask[:3, [col["person"], col["sofa"]]], objects.mask)


def test_a_concept_the_table_does_not_know_stays_unknown():
    may = co_occurrence(["sofa", "glacier", "espresso"])
    assert not may[0, 1] and not may[1, 0] and may[2].all() and may[:, 2].all()
    data = merge_open_world([_set("a", ["espresso"], [[1]]), _set("b", ["glacier"], [[1]])])
    assert data.mask.tolist() == [[1, 0], [0, 1]]


# ---- aliases --------------------------------------------------------------------------------------
def test_aliases_resolve_to_the_models_own_names():
    concepts = ["aeroplane", "livingroom", "tallbuilding", "person"]
    aliases = aliases_for(concepts)
    assert aliases["airplanes"] == "aeroplane" and "glacier" not in aliases.values()
    assert resolve("living_room", concepts, aliases) == "livingroom"
    assert resolve("Living Room", concepts, {}) == "livingroom"
    assert resolve("tall_building", concepts, aliases) == "tallbuilding"
    assert resolve("Airplanes", concepts, aliases) == "aeroplane"
    assert resolve("espresso", concepts, aliases) is None


def test_search_accepts_aliases(filled):
    from vidconcept.search.query import parse
    from vidconcept.search.rank import resolve_concepts

    store, _ = filled
    store.set_meta("aliases", {"kitty": "cat", "people": "person"})
    ids = store.concept_ids()
    assert resolve_concepts(store, parse("kitty AND NOT People")) == {"kitty": ids["cat"], "People": ids["person"]}
    from vidconcept.errors import VidconceptError

    with pytest.raises(VidconceptError):
        resolve_concepts(store, parse("puppy"))


# ---- user concepts ---------------------------------------------------------------------------------
def test_user_concept_scores_are_calibrated_by_cross_validation():
    from vidconcept.concepts import MIN_CALIBRATION, calibrate_detector, fit_detector

    rng = np.random.default_rng(1)
    direction = rng.normal(size=32)

    def draw(n):  # overlapping classes: a balanced LR with weak regularisation is overconfident
        y = rng.random(n) < 0.2
        x = rng.normal(size=(n, 32)) + np.outer(np.where(y, 0.6, -0.6), direction) / np.linalg.norm(direction)
        return x.astype(np.float32), y

    x, y = draw(300)
    raw = fit_detector(x[y], x[~y], c=100.0)
    calibrated, done = calibrate_detector(raw, x[y], x[~y], c=100.0)
    xt, yt = draw(4000)
    assert done and expected_calibration_error(calibrated.predict(xt), yt) < 0.5 * expected_calibration_error(raw.predict(xt), yt)
    few, done = calibrate_detector(raw, x[y][: MIN_CALIBRATION - 1], x[~y])
    assert not done and few is raw

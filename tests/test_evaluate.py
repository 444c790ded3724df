"""AP, MAP and inferred AP, and the evaluate() report."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from sklearn.metrics import average_precision_score

from vidconcept.testing.photos import write_folder_set
from vidconcept.errors import UsageError
from vidconcept.evaluate import evaluate
from vidconcept.metrics.ap import average_precision, inferred_average_precision, metric_table
from vidconcept.model.card import record_metrics

CASES = [(seed, n, rate, judged) for seed, (n, rate, judged) in
         enumerate([(50, 0.2, 1.0), (200, 0.1, 0.7), (300, 0.5, 0.5), (40, 0.05, 0.9), (500, 0.3, 0.3)])]


def random_case(seed, n, rate, judged):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < rate).astype(np.float32)
    labels[0] = 1
    scores = rng.random(n) + 0.5 * labels  # informative but imperfect
    mask = (rng.random(n) < judged).astype(np.float32)
    mask[0] = 1
    return scores, labels, mask


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c[0]}-n{c[1]}")
def test_ap_equals_sklearn_on_judged_images(case):
    scores, labels, mask = random_case(*case)
    judged = mask > 0
    assert average_precision(scores, labels, mask) == pytest.approx(
        average_precision_score(labels[judged], scores[judged]), abs=1e-12)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c[0]}-n{c[1]}")
def test_infap_equals_ap_on_complete_judgments(case):
    scores, labels, _ = random_case(*case)
    n = len(scores)
    for strata, inclusion in [(np.zeros(n, int), {0: 1.0}), (np.arange(n) % 3, {0: 1.0, 1: 1.0, 2: 1.0})]:
        infap = inferred_average_precision(scores, labels, np.ones(n, bool), strata, inclusion)
        assert infap == pytest.approx(average_precision(scores, labels), abs=1e-4)


def test_infap_estimates_ap_from_a_stratified_sample():
    rng = np.random.default_rng(7)
    n = 4000
    labels = (rng.random(n) < 0.1).astype(np.float32)
    scores = rng.random(n) + 0.8 * labels
    strata = np.where(np.argsort(np.argsort(-scores)) < 500, 0, 1)  # top of the ranking judged densely
    inclusion = {0: 1.0, 1: 0.3}
    estimates = []
    for _ in range(30):
        judged = rng.random(n) < np.where(strata == 0, 1.0, 0.3)
        estimates.append(inferred_average_precision(scores, labels, judged, strata, inclusion))
    assert np.mean(estimates) == pytest.approx(average_precision(scores, labels), abs=0.02)


def test_metric_table_skips_concepts_without_positives():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.3]])
    labels = np.array([[1, 0], [0, 0], [1, 0]], dtype=np.float32)
    table = metric_table("ap", scores, labels, np.ones_like(labels), ["a", "b"])
    assert table["map"] == 1.0 and table["ap"] == {"a": 1.0} and 0 <= table["ece"] <= 1
    with pytest.raises(UsageError, match="metric"):
        metric_table("auc", scores, labels, np.ones_like(labels), ["a", "b"])


@pytest.fixture(scope="module")
def espresso_csv(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_folder_set(root / "img", {"coffee": skimage.data.coffee(), "cat": skimage.data.chelsea()}, 3, 96)
    rows = [f"img/coffee/{i}.jpg,1,0,1" for i in range(3)] + [f"img/cat/{i}.jpg,0,,0" for i in range(3)]
    (root / "labels.csv").write_text("path,espresso,tabby,not_a_concept_of_imagenet\n" + "\n".join(rows) + "\n")
    return f"csv:{root / 'labels.csv'}"


@pytest.mark.parametrize("metric", ["ap", "infap"])
def test_evaluate_report_on_the_default_model(espresso_csv, metric):
    report = evaluate(None, espresso_csv, split="test", metric=metric, batch_size=4, device="cpu")
    assert report["images"] == 6 and report["concepts"] == ["espresso", "tabby"]
    assert set(report["outputs"]) == {"direct"}  # the ImageNet bundle has no LR detectors
    direct = report["outputs"]["direct"]
    assert direct["ap"]["espresso"] == pytest.approx(1.0, abs=1e-4)
    assert set(direct["ap"]) == {"espresso"}  # tabby has no judged positive here


def test_record_metrics_updates_the_card(tmp_path, espresso_csv):
    import shutil

    from conftest import ROOT

    bundle = shutil.copytree(ROOT / "models" / "imagenet-lite0", tmp_path / "b")
    report = evaluate(bundle, espresso_csv, split="test", device="cpu")
    record_metrics(bundle, report, "vidconcept evaluate …")
    card = (bundle / "MODEL.md").read_text()
    assert "vidconcept evaluate …" in card and "| espresso | 1.0000 |" in card


def test_evaluate_scores_a_data_set_under_the_models_own_names(tmp_path, espresso_csv):
    import shutil

    from conftest import ROOT
    from vidconcept.model.bundle import read_config, write_config

    bundle = shutil.copytree(ROOT / "models" / "imagenet-lite0", tmp_path / "b")
    config = read_config(bundle)
    config.aliases = {"kitty": "tabby"}
    write_config(bundle, config)
    root = Path(espresso_csv[4:]).parent
    rows = [f"img/coffee/{i}.jpg,1,0" for i in range(3)] + [f"img/cat/{i}.jpg,0,1" for i in range(3)]
    (root / "renamed.csv").write_text("path,Espresso,kitty\n" + "\n".join(rows) + "\n")
    report = evaluate(bundle, f"csv:{root / 'renamed.csv'}", split="test", batch_size=6, device="cpu")
    assert report["concepts"] == ["espresso", "tabby"] and report["aliases"] == {"kitty": "tabby"}
    assert report["outputs"]["direct"]["ap"]["espresso"] == pytest.approx(1.0, abs=1e-4)

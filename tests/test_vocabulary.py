"""A release's vocabulary across photo sets: merged names, teacher negatives, the masked loss over two
sets and a widened concept layer, on small fixtures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidconcept.data import LabelledImages
from vidconcept.data.datasets import merge
from vidconcept.data.open_world import merge_open_world
from vidconcept.model.vocabulary import PairMeasure, hierarchy, measure_pair, merged_names, rename_concepts


def _set(name: str, concepts: list[str], labels, mask=None) -> LabelledImages:
    labels = np.asarray(labels, np.float32)
    mask = np.ones_like(labels) if mask is None else np.asarray(mask, np.float32)
    return LabelledImages(f"folder:{name}", [Path(f"{name}-{i}.jpg") for i in range(len(labels))], concepts, labels, mask)


def test_renaming_merges_columns_and_drops_names_but_keeps_their_photos():
    caltech = _set("caltech101", ["faces", "faces_easy", "trilobite"], [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                   mask=[[1, 0, 1], [1, 1, 1], [1, 1, 1]])
    face = rename_concepts(caltech, {"faces": "face", "faces_easy": "face"}, keep_only=True)
    assert face.concepts == ["face"] and len(face) == 3  # the trilobite photo stays, as a negative
    assert face.labels[:, 0].tolist() == [1, 1, 0] and face.mask[:, 0].tolist() == [1, 1, 1]
    renamed = rename_concepts(caltech, {"trilobite": None})
    assert renamed.concepts == ["faces", "faces_easy"]
    # an unknown source cell does not make a positive: faces_easy is unjudged in row 0
    np.testing.assert_array_equal(renamed.labels, caltech.labels[:, :2] * caltech.mask[:, :2])


def _scores_for_two_sets():
    """Two sets of three classes each; ``a/sea`` and ``b/coast`` find each other's photos, ``a/forest``
    and ``b/forest`` (the same spelling) do not."""
    rows = {"a": np.arange(0, 6), "b": np.arange(6, 12)}
    classes = {"a": ["sea", "forest", "desk"], "b": ["coast", "forest", "bar"]}
    labels = {s: np.repeat(np.eye(3, dtype=np.float32), 2, axis=0) for s in rows}
    scores = {}
    for s, names in classes.items():
        for j, name in enumerate(names):
            own = np.zeros(12, np.float32)
            own[rows[s]] = labels[s][:, j]
            scores[f"{s}/{name}"] = own
    scores["a/sea"][[6, 7]] = 0.9  # sea's detector finds coast photos
    scores["b/coast"][[0, 1]] = 0.8
    scores["a/forest"][[10, 11]] = 0.7  # forest (a) finds b's bars, not b's forests
    scores["b/forest"][[4, 5]] = 0.6  # and b's forest finds a's desks: unrelated, whatever the spelling
    scores["b/bar"][[4, 5]] = 0.9  # b's bar finds a's desks; a's desk finds bars and forests alike: a broader idea
    scores["a/desk"][6:12] = 0.5
    return scores, rows, labels, classes


def test_names_merge_by_measurement_not_spelling():
    scores, rows, labels, classes = _scores_for_two_sets()
    sea = measure_pair("a/sea", "b/coast", scores, rows, labels, classes)
    forest = measure_pair("a/forest", "b/forest", scores, rows, labels, classes)
    assert sea.merge and sea.ap_ab == 1.0 and sea.best_ab == "b/coast"
    desk = measure_pair("a/desk", "b/bar", scores, rows, labels, classes)
    assert sea.relation == "same" and forest.relation is None and not forest.merge and forest.best_ab == "b/bar"
    assert desk.relation == "contains" and not desk.merge and hierarchy([sea, forest, desk]) == [("a/desk", "b/bar")]
    # the first set's name is the concept; a chain of merges is one concept
    assert merged_names([sea, forest, desk], ["a", "b"]) == {"a/sea": "sea", "b/coast": "sea"}
    chain = [PairMeasure("b/x", "c/y", 1, 1, "c/y", "b/x"), PairMeasure("a/z", "c/y", 1, 1, "c/y", "a/z")]
    assert merged_names(chain, ["a", "b", "c"]) == {"a/z": "z", "b/x": "z", "c/y": "z"}


def test_a_teacher_decides_pairs_the_co_occurrence_table_does_not_know():
    sports = _set("sports", ["surfing", "tennis"], [[1, 0], [0, 1]])
    places = _set("places", ["kitchen", "coast"], [[1, 0], [0, 1]])
    sets = [sports, places]
    plain = merge(sets)
    assert merge_open_world(sets).mask.sum() == plain.mask.sum()  # without a teacher: unknown stays unknown
    teacher = np.full((4, 4), 0.5, np.float32)
    col = {c: i for i, c in enumerate(plain.concepts)}
    teacher[0, col["kitchen"]] = 0.01  # a surfing photo does not look like a kitchen
    teacher[3, col["surfing"]] = 0.02  # a coast photo: no surfing in sight
    data = merge_open_world(sets, teacher=teacher, threshold=0.1)
    added = np.argwhere(data.mask - plain.mask)
    assert sorted(map(tuple, added.tolist())) == [(0, col["kitchen"]), (3, col["surfing"])]
    assert not data.labels[0, col["kitchen"]] and not data.labels[3, col["surfing"]]
    # the table still decides the pairs it names: a sofa photo stays unknown for livingroom whatever the teacher says
    voc, scenes = _set("voc", ["sofa"], [[1]]), _set("scenes", ["livingroom", "glacier"], [[1, 0], [0, 1]])
    low = np.zeros((3, 3), np.float32)
    both = merge_open_world([voc, scenes], teacher=low)
    c = {n: i for i, n in enumerate(both.concepts)}
    assert both.mask[0, c["livingroom"]] == 0 and both.mask[0, c["glacier"]] == 1


def test_the_masked_loss_over_two_sets_learns_only_from_judged_cells():
    """Two sets with disjoint concepts: a cell neither set judges gives exactly zero gradient."""
    from vidconcept.model.train import masked_bce

    data = merge([_set("a", ["cat"], [[1], [0]]), _set("b", ["sea"], [[1], [0]])])
    logits = torch.zeros(4, 2, requires_grad=True)
    loss = masked_bce(logits, torch.from_numpy(data.labels), torch.from_numpy(data.mask))
    loss.backward()
    unknown = data.mask == 0
    assert unknown.sum() == 4 and (logits.grad.numpy()[unknown] == 0).all()
    assert (logits.grad.numpy()[~unknown] != 0).all()


def test_a_wider_vocabulary_starts_from_the_old_concept_rows():
    from vidconcept.model.backbones import create_backbone
    from vidconcept.model.strategies import parse_strategy
    from vidconcept.model.train import init_concept_layer

    torch.manual_seed(0)
    net = parse_strategy("ft3-ex1-64").build(create_backbone("tf_efficientnet_lite0", "none"), 3)
    old_weight = net.concept_layer.weight.detach().clone()
    net = init_concept_layer(net, ["cat", "livingroom", "sea"], ["living_room", "dog", "sea", "cat"],
                             {"living_room": "livingroom"})
    w = net.concept_layer.weight.detach()
    assert w.shape[0] == 4
    torch.testing.assert_close(w[[0, 2, 3]], old_weight[[1, 2, 0]])
    assert not any(torch.equal(w[1], row) for row in old_weight)


#: The concepts of the default model before the open-world release: saved queries and indexes use them.
PREVIOUS_DEFAULT = ("aeroplane bedroom bicycle bird boat bottle buildings bus car cat chair coast cow diningtable dog "
                    "forest glacier highway horse industrial insidecity kitchen livingroom motorbike mountain office "
                    "opencountry person pottedplant sea sheep sofa store street suburb tallbuilding train tvmonitor").split()


def test_every_name_of_the_previous_default_stays_searchable():
    from conftest import ROOT
    from vidconcept.model.bundle import read_config
    from vidconcept.model.names import resolve

    config = read_config(ROOT / "models" / "default")
    unresolved = [n for n in PREVIOUS_DEFAULT if resolve(n, config.concepts, config.aliases) is None]
    assert not unresolved
    # an alias names a concept of the bundle, and no alias shadows a concept
    assert set(config.aliases.values()) <= set(config.concepts)
    assert not set(config.aliases) & set(config.concepts)

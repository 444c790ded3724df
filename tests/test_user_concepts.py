"""User concepts (issue 10): train on stored features, re-score, refine, remove, persist, refuse bad input.

The synthetic index plants a concept: shots whose features lean towards one direction.
A detector trained on a few of them must rank the other planted shots first.
"""
from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import fill_store
from vidconcept import concepts as uc
from vidconcept.api import Index
from vidconcept.cli import main
from vidconcept.errors import QueryError, UnknownNameError, UsageError
from vidconcept.index.store import ShotData, Store
from vidconcept.web import create_app

DIM, VIDEOS, SHOTS = 16, 4, 10


def add_video(store: Store, v: int, planted: np.ndarray, seed: int) -> list[int]:
    """One video of ``SHOTS`` shots; ``planted[i]`` shots lean towards feature axis 0."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(SHOTS, DIM)).astype(np.float32)
    feats[planted, 0] += 4.0
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    shots = [ShotData(i, i * 25, (i + 1) * 25, float(i), i + 1.0, None) for i in range(SHOTS)]
    cids = store.ensure_concepts(["cat", "dog"])
    scores = rng.random((SHOTS, 2)).astype(np.float32)
    return store.replace_video({"path": f"/videos/v{v}.mp4", "duration_s": float(SHOTS)}, shots, scores,
                               [cids["cat"], cids["dog"]], feats).shot_ids


@pytest.fixture
def planted(tmp_path) -> tuple[Index, list[int], list[int]]:
    """An index of 40 shots, every third one planted; returns (index, planted ids, other ids)."""
    root = tmp_path / "index"
    store = Store.open(root)
    store.set_meta("feature_dim", DIM)
    store.set_meta("model", {"name": "fake", "feature_dim": DIM})
    mask = np.arange(SHOTS) % 3 == 0
    pos, neg = [], []
    for v in range(VIDEOS):
        ids = add_video(store, v, mask, seed=v)
        pos += [i for i, m in zip(ids, mask) if m]
        neg += [i for i, m in zip(ids, mask) if not m]
    store.close()
    index = Index(root)
    yield index, pos, neg
    index.close()


def ranked(index: Index, query: str) -> list[int]:
    return [h.shot_id for h in index.search(query, top=100)]


# ---- training and re-scoring ---------------------------------------------------------------------
def test_add_trains_and_scores_every_shot(planted):
    index, pos, neg = planted
    concept = uc.add_concept(index, "lean", positive=pos[:3], negative=neg[:2])
    assert concept.info["scored"] == len(pos) + len(neg)
    top = ranked(index, "lean")[: len(pos)]
    assert len(set(top) & set(pos)) >= len(pos) - 2  # the held-out planted shots rank first
    row = {c["name"]: c for c in index.concepts(min_score=0.5)}["lean"]
    assert row["source"] == "user" and row["shots"] >= 3


def test_add_records_labels_date_and_model(planted):
    index, pos, neg = planted
    uc.add_concept(index, "lean", positive=pos[:3], negative=neg[:2])
    info = uc.get_concept(index, "lean").to_dict()
    assert info["positive"] == sorted(pos[:3]) and info["negative"] == sorted(neg[:2])
    assert info["model"] == {"name": "fake", "feature_dim": DIM}
    assert info["created_at"] and info["rounds"] == 1
    assert info["sampled_negatives"] == min(uc.MIN_NEGATIVES, len(pos) + len(neg) - 5)  # topped up from the index


def test_user_concept_combines_in_queries(planted):
    index, pos, neg = planted
    uc.add_concept(index, "lean", positive=pos[:3])
    index.search("dog AND NOT lean")  # a boolean query loads the column through the cache
    assert set(ranked(index, "lean OR cat")) <= set(pos + neg)
    assert ranked(index, "LEAN") == ranked(index, "lean")  # names resolve case-insensitively, as model concepts do


def test_refine_updates_labels_and_the_ranking(planted):
    index, pos, neg = planted
    uc.add_concept(index, "lean", positive=pos[:2], negative=neg[:1])
    before = index.search("lean AND NOT dog", top=40).results  # fills the column cache
    refined = uc.refine_concept(index, "lean", positive=pos[2:6], negative=[pos[0]] + neg[1:4])
    assert refined.positive == sorted(pos[1:6]) and pos[0] in refined.negative  # relabelled shot moved
    assert refined.info["rounds"] == 2
    after = index.search("lean AND NOT dog", top=40).results
    assert [(h.shot_id, h.score) for h in before] != [(h.shot_id, h.score) for h in after]


def test_remove_deletes_concept_and_scores(planted):
    index, pos, _ = planted
    concept = uc.add_concept(index, "lean", positive=pos[:3])
    uc.remove_concept(index, "lean")
    assert "lean" not in index.store.concept_ids()
    assert index.store.db.execute("SELECT count(*) FROM scores WHERE concept_id = ?", [concept.id]).fetchone()[0] == 0
    with pytest.raises(UnknownNameError):
        index.search("lean")


def test_persists_across_restarts(planted):
    index, pos, neg = planted
    uc.add_concept(index, "lean", positive=pos[:3], negative=neg[:3])
    expected, labels = ranked(index, "lean"), uc.get_concept(index, "lean").to_dict()
    index.close()
    with Index(index.root) as again:
        assert ranked(again, "lean") == expected
        assert uc.get_concept(again, "lean").to_dict() == labels
        uc.refine_concept(again, "lean", positive=pos[3:5])
        assert uc.get_concept(again, "lean").info["rounds"] == 2


def test_rescore_scores_shots_ingested_later(planted):
    index, pos, _ = planted
    uc.add_concept(index, "lean", positive=pos[:3])
    new = add_video(index.store, 99, np.arange(SHOTS) % 3 == 0, seed=99)
    assert not set(new) & set(ranked(index, "lean"))
    assert uc.rescore(index) == ["lean"]
    assert set(new[::3]) <= set(ranked(index, "lean")[: len(pos) + 4])


def test_dropped_shots_lose_their_labels(planted):
    index, pos, neg = planted
    uc.add_concept(index, "lean", positive=pos[:4], negative=neg[:2])
    with index.store.db.atomic():  # as a re-ingest of a changed video does
        index.store.db.execute("DELETE FROM features WHERE shot_id = ?", [pos[0]])
        index.store.db.execute("DELETE FROM shot_scores WHERE shot_id = ?", [pos[0]])
        index.store.db.execute("DELETE FROM shots WHERE id = ?", [pos[0]])
    refined = uc.refine_concept(index, "lean", negative=[neg[3]])
    assert pos[0] not in refined.positive and refined.positive == sorted(pos[1:4])


# ---- suggestions ----------------------------------------------------------------------------------
def test_suggest_from_scores_uncertain_and_top():
    ids = np.arange(10, 20)
    scores = np.array([0.99, 0.95, 0.52, 0.49, 0.1, 0.05, 0.7, 0.3, 0.9, 0.01], np.float32)
    found = uc.suggest_from_scores(ids, scores, labelled={10}, count=4)
    assert found["uncertain"][:2] == [13, 12] and found["top"][:2] == [11, 18]
    assert found["next"] == [13, 11, 12, 18]
    assert 10 not in found["next"]


def test_suggest_skips_labelled_shots(planted):
    index, pos, neg = planted
    uc.add_concept(index, "lean", positive=pos[:3], negative=neg[:3])
    found = uc.suggest(index, "lean", count=6)
    assert len(found["next"]) == 6 == len(set(found["next"]))
    assert not set(found["next"]) & set(pos[:3] + neg[:3])


def test_sample_negatives_tops_up_without_labelled_shots():
    ids = np.arange(1000)
    got = uc.sample_negatives(ids, labelled={1, 2, 3}, positives=20, negatives=30, seed=5)
    assert len(got) == max(uc.MIN_NEGATIVES, uc.NEGATIVES_PER_POSITIVE * 20) - 30
    assert not set(got.tolist()) & {1, 2, 3}
    assert np.array_equal(got, uc.sample_negatives(ids, {1, 2, 3}, 20, 30, seed=5))
    assert len(uc.sample_negatives(ids, set(), positives=1, negatives=500)) == 0


# ---- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a b", "a.b", "dog's", "AND", "not", "42", "", "x" * 65, "été", '"q"'],
                         ids=["space", "dot", "quote", "AND", "not", "number", "empty", "too-long", "accent", "quoted"])
def test_invalid_names_are_refused(planted, name):
    index, pos, _ = planted
    with pytest.raises(UsageError, match="concept name"):
        uc.add_concept(index, name, positive=pos[:1])


@pytest.mark.parametrize("name", ["x-ray_2", "Forest", "3d"], ids=["dash-underscore", "capital", "digit-first"])
def test_valid_names_are_query_tokens(planted, name):
    index, pos, _ = planted
    uc.add_concept(index, name, positive=pos[:2])
    assert ranked(index, f"{name} OR dog")


@pytest.mark.parametrize("name, error", [
    ("cat", uc.ConceptExistsError), ("CAT", uc.ConceptExistsError), ("lean", uc.ConceptExistsError),
    ("Lean", uc.ConceptExistsError)], ids=["model", "model-case", "user", "user-case"])
def test_name_clashes_are_refused(planted, name, error):
    index, pos, _ = planted
    uc.add_concept(index, "lean", positive=pos[:2])
    with pytest.raises(error, match="already"):
        uc.add_concept(index, name, positive=pos[2:4])


@pytest.mark.parametrize("positive, negative, match", [
    ([], [1], "at least one positive"), ([99999], [], "no shots with ids"), ([1], [88888], "no shots with ids"),
    ([1, 2], [2], "both positive and negative"), (["x"], [], "whole numbers")],
    ids=["no-positives", "unknown-positive", "unknown-negative", "both", "not-a-number"])
def test_bad_labels_are_refused(planted, positive, negative, match):
    index, _, _ = planted
    with pytest.raises(UsageError, match=match):
        uc.add_concept(index, "lean", positive=positive, negative=negative)
    assert "lean" not in index.store.concept_ids()  # nothing half-written


@pytest.mark.parametrize("call", [uc.refine_concept, uc.remove_concept, uc.suggest],
                         ids=["refine", "remove", "suggest"])
def test_model_and_unknown_concepts_cannot_be_changed(planted, call):
    index, pos, _ = planted
    kwargs = {"positive": pos[:1]} if call is uc.refine_concept else {}
    with pytest.raises(uc.ModelConceptError):
        call(index, "cat", **kwargs)
    with pytest.raises(UnknownNameError, match="unknown concept"):
        call(index, "nope", **kwargs)


def test_refine_needs_labels(planted):
    index, pos, _ = planted
    uc.add_concept(index, "lean", positive=pos[:2])
    with pytest.raises(UsageError, match="at least one"):
        uc.refine_concept(index, "lean")
    with pytest.raises(uc.UnknownShotError):
        uc.refine_concept(index, "lean", negative=[12345])


def test_a_removed_name_is_no_query_token_anymore(planted):
    index, pos, _ = planted
    uc.add_concept(index, "lean", positive=pos[:2])
    uc.remove_concept(index, "lean")
    with pytest.raises((UnknownNameError, QueryError)):
        index.search("lean AND dog")


# ---- CLI --------------------------------------------------------------------------------------------
def test_cli_add_suggest_refine_remove(planted, capsys):
    index, pos, neg = planted
    root = str(index.root)
    index.close()
    assert main(["concept", "add", "lean", "--positive", *map(str, pos[:3]), "--negative", str(neg[0]),
                 "--index", root]) == 0
    assert "4 labels" not in capsys.readouterr().out
    assert main(["concept", "suggest", "lean", "--index", root, "--json", "--count", "4"]) == 0
    assert '"next"' in capsys.readouterr().out
    assert main(["concept", "refine", "lean", "--negative", str(neg[1]), "--index", root]) == 0
    assert main(["search", "lean", "--index", root, "--top", "3"]) == 0
    assert main(["concept", "rescore", "--index", root]) == 0
    assert main(["concept", "show", "lean", "--index", root]) == 0
    assert '"rounds": 2' in capsys.readouterr().out
    assert main(["concept", "remove", "lean", "--index", root]) == 0
    assert "removed concept lean" in capsys.readouterr().out


@pytest.mark.parametrize("argv, status, message", [
    (["concept", "add", "cat", "--positive", "1"], 2, "already a concept of the model"),
    (["concept", "add", "a.b", "--positive", "1"], 2, "not allowed"),
    (["concept", "add", "new", "--negative", "1"], 2, "at least one positive"),
    (["concept", "add", "new", "--positive", "77777"], 2, "no shots with ids"),
    (["concept", "refine", "nope", "--positive", "1"], 1, "unknown concept"),
    (["concept", "remove", "dog"], 2, "concept of the model")],
    ids=["clash", "bad-name", "no-positives", "unknown-shot", "unknown-concept", "model-concept"])
def test_cli_errors_are_one_line(planted, capsys, argv, status, message):
    index, _, _ = planted
    assert main([*argv, "--index", str(index.root)]) == status
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ---- web --------------------------------------------------------------------------------------------
@pytest.fixture
def client(tmp_path):
    store = Store.open(tmp_path / "web")
    fill_store(store)
    store.close()
    with TestClient(create_app(tmp_path / "web", load_model=False), base_url="http://localhost") as c:
        yield c


def test_web_create_label_suggest_delete(client):
    r = client.post("/api/concepts", json={"name": "trees", "positive": [1, 2], "negative": [3]})
    assert r.status_code == 201 and r.json()["positive"] == [1, 2]
    assert {c["name"]: c["source"] for c in client.get("/api/concepts").json()}["trees"] == "user"
    before = client.get("/api/search", params={"q": "trees AND person"}).json()
    r = client.post("/api/concepts/trees/labels", json={"positive": [4, 5], "negative": [1]})
    assert r.status_code == 200 and r.json()["rounds"] == 2 and 1 in r.json()["negative"]
    assert client.get("/api/search", params={"q": "trees AND person"}).json() != before  # ranking updated
    r = client.get("/api/concepts/trees/suggest", params={"count": 3})
    assert r.status_code == 200 and len(r.json()["next"]) == 3 and r.json()["next"][0]["keyframe_url"]
    assert client.get("/api/concepts/trees").json()["name"] == "trees"
    assert client.delete("/api/concepts/trees").status_code == 200
    assert client.get("/api/search", params={"q": "trees"}).status_code == 400


@pytest.mark.parametrize("method, path, body, status", [
    ("post", "/api/concepts", {"name": "cat", "positive": [1]}, 409),
    ("post", "/api/concepts", {"name": "bad name", "positive": [1]}, 400),
    ("post", "/api/concepts", {"name": "new", "positive": [424242]}, 400),
    ("post", "/api/concepts", {"name": "new", "negative": [1]}, 400),
    ("post", "/api/concepts", {"positive": [1]}, 422),
    ("post", "/api/concepts/nope/labels", {"positive": [1]}, 404),
    ("post", "/api/concepts/dog/labels", {"positive": [1]}, 409),
    ("delete", "/api/concepts/nope", None, 404),
    ("delete", "/api/concepts/dog", None, 409),
    ("get", "/api/concepts/nope/suggest", None, 404)],
    ids=["clash", "bad-name", "unknown-shot", "no-positives", "no-name", "labels-unknown", "labels-model",
         "delete-unknown", "delete-model", "suggest-unknown"])
def test_web_errors(client, method, path, body, status):
    r = client.request(method.upper(), path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_web_duplicate_is_409(client):
    assert client.post("/api/concepts", json={"name": "trees", "positive": [1]}).status_code == 201
    r = client.post("/api/concepts", json={"name": "Trees", "positive": [2]})
    assert r.status_code == 409 and "refine" in r.json()["detail"]


# ---- with the real model: example images ----------------------------------------------------------------
def test_example_images_with_the_default_model(photo_videos, tmp_path):
    """``--image``: a photo of a cat trains a concept that ranks the cat shot of the indexed videos first."""
    import skimage.data
    from PIL import Image

    cat = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()).save(cat)
    with Index(tmp_path / "index", create=True) as index:
        index.ingest([photo_videos])
        coffee = [h.shot_id for h in index.similar(image=skimage.data.coffee(), top=2)]
        concept = uc.add_concept(index, "kitty", positive=[], negative=coffee, images=[str(cat)])
        assert concept.info["images"] == [str(cat)] and len(concept.info["image_features"]) == 1
        best = index.search("kitty", top=1)[0]
        assert best.shot_id not in coffee and best.video.endswith("a.mp4")

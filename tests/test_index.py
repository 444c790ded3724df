import json

import numpy as np
import pytest

from conftest import CONCEPTS, fill_store
from vidconcept.api import Index
from vidconcept.errors import IndexError_, UsageError
from vidconcept.index import migrations
from vidconcept.index.store import SCORE_FLOOR, ShotData, Store
from vidconcept.index.vectors import DIGEST_NAME, FAISS_NAME, open_vectors


def test_schema_version_recorded(store):
    assert migrations.schema_version(store.db) == migrations.LATEST
    assert {"videos", "shots", "concepts", "shot_scores", "features", "meta"} <= set(store.db.table_names())
    assert "scores" in store.db.view_names()  # the old rows, unpacked, for ad-hoc SQL


def test_newer_schema_is_refused(tmp_path):
    s = Store.open(tmp_path)
    s.set_meta("schema_version", migrations.LATEST + 1)
    s.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(migrations.LATEST + 1)])
    s.db.conn.commit()
    s.close()
    with pytest.raises(IndexError_, match="newer"):
        Store.open(tmp_path)


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexError_, match="no index here"):
        Index(tmp_path / "nothing")


def test_replace_video_is_idempotent(filled):
    store, _ = filled
    before = store.counts()
    fill_store(store)  # same paths again: replaced, not duplicated
    assert store.counts() == before
    assert before["videos"] == 3 and before["shots"] == 12


def test_replace_video_returns_what_it_wrote(store):
    """A changed file: the unchanged shot keeps its id, the re-cut one is gone, and the
    caller learns both from the return value (nothing is left on the store)."""
    cids = [store.ensure_concepts(["a"])["a"]]
    first = [ShotData(0, 0, 10, 0.0, 0.4, None), ShotData(1, 10, 20, 0.4, 0.8, None)]
    one = store.replace_video({"path": "/v.mp4"}, first, np.ones((2, 1), np.float32), cids, np.ones((2, 4), np.float32))
    assert one.reshoot.kept == set() and one.removed == [] and len(one.shot_ids) == 2
    second = [ShotData(0, 0, 10, 0.0, 0.4, None), ShotData(1, 10, 15, 0.4, 0.6, None), ShotData(2, 15, 20, 0.6, 0.8, None)]
    two = store.replace_video({"path": "/v.mp4"}, second, np.ones((3, 1), np.float32), cids, np.ones((3, 4), np.float32))
    assert two.video_id == one.video_id
    assert two.shot_ids[0] == one.shot_ids[0] and two.reshoot.kept == {one.shot_ids[0]}
    assert set(two.reshoot.gone) == {one.shot_ids[1]} and two.removed == sorted(one.shot_ids)
    assert not hasattr(store, "last_removed") and not hasattr(store, "last_reshoot")


def test_scores_below_floor_are_not_stored(store):
    cids = store.ensure_concepts(["a", "b"])
    shots = [ShotData(0, 0, 10, 0.0, 0.4, None)]
    store.replace_video({"path": "/v.mp4"}, shots, np.array([[0.9, SCORE_FLOOR / 2]], np.float32),
                        [cids["a"], cids["b"]], np.ones((1, 4), np.float32))
    assert store.db.execute("SELECT count(*) FROM scores").fetchone()[0] == 1


def test_failed_file_keeps_earlier_index(filled):
    store, _ = filled
    store.mark_video("/videos/v0.mp4", "failed", "truncated")
    row = store.video_by_path("/videos/v0.mp4")
    assert row["status"] == "indexed" and row["error"] == "truncated"
    assert store.counts()["shots"] == 12


def test_vectors_rebuilt_when_stale_or_corrupt(filled):
    store, _ = filled
    vi = open_vectors(store, None)
    assert vi.ntotal == 12
    path = store.root / FAISS_NAME
    assert path.exists() and json.loads((store.root / DIGEST_NAME).read_text())["count"] == 12
    path.write_bytes(b"garbage")
    assert open_vectors(store, None).ntotal == 12
    fill_store(store, n_videos=4)  # a new video: the saved file is stale
    assert open_vectors(store, None).ntotal == 16
    path.unlink()
    assert open_vectors(store, None).ntotal == 16


def test_index_api_search_and_similar(filled):
    store, scores = filled
    index = Index(store.root)
    res = index.search("cat", top=3)
    assert len(res) == 3 and res.total == 12
    assert res[0].score == pytest.approx(scores[:, 0].max(), rel=1e-5)
    assert res[0].video.startswith("/videos/") and set(res[0].concepts) <= set(CONCEPTS)
    sim = index.similar(shot=res[0].shot_id, top=4)
    assert len(sim) == 4 and res[0].shot_id not in [r.shot_id for r in sim]
    assert sim[0].score >= sim[-1].score
    feats = store.feature(res[0].shot_id)
    nearest = index.similar(image=None, shot=sim[0].shot_id, top=1)
    assert len(nearest) == 1 and feats is not None
    assert index.info()["shots"] == 12
    with pytest.raises(UsageError):
        index.similar(shot=99999)
    with pytest.raises(UsageError):
        index.search("cat", top=0)
    index.close()


def test_vector_index_becomes_ivf_when_the_collection_grows(store, monkeypatch):
    from vidconcept.index import vectors

    monkeypatch.setattr(vectors, "IVF_MIN_SHOTS", 100)
    fill_store(store, n_videos=4, shots_per_video=10)
    assert open_vectors(store, None).kind == "flat"
    fill_store(store, n_videos=40, shots_per_video=10)  # 400 shots: past 2 × the limit
    vi = open_vectors(store, None)
    assert vi.kind == "ivf" and vi.ntotal == 400
    ids, mat = next(store.iter_features())
    _, found = vi.search(mat[:20], 1)
    assert np.mean(found[:, 0] == ids[:20]) >= 0.9  # each shot finds itself
    assert open_vectors(store, None).kind == "ivf"  # the saved file is reused

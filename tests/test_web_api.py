"""The REST API over a synthetic index (no video decoding, no model): FastAPI's test client."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import CONCEPTS, fill_store, write_keyframes
from vidconcept.api import Index
from vidconcept.errors import IndexError_
from vidconcept.index.store import Store
from vidconcept.web import app as web_app
from vidconcept.web import create_app
from vidconcept.web.api import MAX_UPLOAD_BYTES

N_VIDEOS, SHOTS_PER_VIDEO = 3, 4


@pytest.fixture
def index_dir(tmp_path) -> Path:
    """A synthetic index with real keyframe JPEGs and one real (fake-content) video file."""
    root = tmp_path / "index"
    store = Store.open(root)
    fill_store(store, N_VIDEOS, SHOTS_PER_VIDEO)
    write_keyframes(store, (200, 80, 40))
    video = tmp_path / "v0.mp4"
    video.write_bytes(bytes(range(256)) * 40)
    store.touch_video(1, path=str(video))
    store.close()
    return root


@pytest.fixture
def client(index_dir) -> TestClient:
    with TestClient(create_app(index_dir, load_model=False), base_url="http://localhost") as c:
        yield c


@pytest.fixture
def scores(tmp_path) -> np.ndarray:
    """The score matrix ``fill_store`` wrote (it is deterministic for a seed)."""
    store = Store.open(tmp_path / "scores")
    try:
        return fill_store(store, N_VIDEOS, SHOTS_PER_VIDEO)
    finally:
        store.close()


def test_concepts_count_shots_above_half(client, scores):
    got = {c["name"]: c["shots"] for c in client.get("/api/concepts").json()}
    assert got == {name: int((scores[:, i] >= 0.5).sum()) for i, name in enumerate(CONCEPTS)}


def test_search_matches_the_library(client, index_dir):
    page = client.get("/api/search", params={"q": "dog AND NOT night", "top": 5}).json()
    with Index(index_dir) as index:
        expected = index.search("dog AND NOT night", top=5)
    assert [r["shot_id"] for r in page["results"]] == [r.shot_id for r in expected]
    assert page["total"] == expected.total
    first = page["results"][0]
    assert set(first) >= {"shot_id", "video", "start_s", "end_s", "score", "keyframe_url", "video_url", "concepts"}
    assert first["keyframe_url"] == f"/keyframes/{first['shot_id']}.jpg"
    assert first["video_url"] == f"/videos/{first['video_id']}"


def test_search_pages(client):
    everything = client.get("/api/search", params={"q": "cat", "top": 12}).json()["results"]
    second = client.get("/api/search", params={"q": "cat", "top": 5, "offset": 5}).json()["results"]
    assert [r["shot_id"] for r in second] == [r["shot_id"] for r in everything[5:10]]


@pytest.mark.parametrize("video", [1, 2, 3])
def test_search_filters_by_video(client, video):
    page = client.get("/api/search", params={"q": "grass OR dog", "video": video, "top": 2}).json()
    assert page["total"] == SHOTS_PER_VIDEO  # random scores are all > 0
    assert {r["video_id"] for r in page["results"]} == {video}
    scores = [r["score"] for r in page["results"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("params, status, message", [
    ({"q": "dgo"}, 400, "did you mean 'dog'"),
    ({"q": "dog AND ("}, 400, ""),
    ({"q": "dog", "video": 1, "min_score": 0.2, "offset": 0, "top": 1}, 200, ""),
    ({"q": ""}, 422, ""),
    ({"q": "dog", "top": 0}, 422, "top"),
    ({"q": "dog", "min_score": 2}, 422, "min_score"),
    ({"q": "dog", "offset": -1}, 422, "offset"),
    ({"q": "dog", "video": 99}, 404, "no video with id 99"),
], ids=["unknown-concept", "malformed", "all-options", "empty", "top-0", "min-score-2", "offset-neg", "no-video"])
def test_search_errors_are_client_errors(client, params, status, message):
    r = client.get("/api/search", params=params)
    assert r.status_code == status, r.text
    if status != 200:
        assert message in str(r.json()["detail"]) and r.json()["detail"]


def test_similar_to_a_shot(client):
    page = client.get("/api/similar", params={"shot": 3, "top": 4}).json()
    ids = [r["shot_id"] for r in page["results"]]
    assert len(ids) == 4 and 3 not in ids
    assert client.get("/api/similar", params={"shot": 999}).status_code == 404


@pytest.mark.parametrize("data, status", [
    (b"not an image", 400),
    (b"\xff" * (MAX_UPLOAD_BYTES + 100_000), 413),
], ids=["not-image", "too-large"])
def test_similar_upload_rejects(client, data, status):
    r = client.post("/api/similar", files={"image": ("x.jpg", data, "image/jpeg")})
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_shot_detail(client):
    shot = client.get("/api/shots/6").json()
    assert (shot["shot_id"], shot["video_id"], shot["shot_index"]) == (6, 2, 1)
    assert list(shot["scores"]) and list(shot["scores"].values()) == sorted(shot["scores"].values(), reverse=True)
    assert client.get("/api/shots/999").status_code == 404


def test_videos_and_stats(client):
    videos = client.get("/api/videos").json()
    assert [v["id"] for v in videos] == [1, 2, 3] and videos[0]["name"] == "v0.mp4"
    stats = client.get("/api/stats").json()
    assert (stats["videos"], stats["shots"], stats["concepts"]) == (3, 12, 5)


def test_keyframes_served_only_inside_the_index(client, index_dir):
    r = client.get("/keyframes/1.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert client.get("/keyframes/999.jpg").status_code == 404
    assert client.get("/keyframes/..%2F..%2Findex.db").status_code in (404, 422)
    assert client.get("/keyframes/2.jpg").status_code == 200  # now the server holds it (cache)
    store = Store.open(index_dir)
    store.db.execute("UPDATE shots SET keyframe = '../../../etc/passwd' WHERE id = 2")
    store.db.conn.commit()
    store.close()
    assert client.get("/keyframes/2.jpg").status_code == 404


def test_keyframe_etag_answers_304(client, index_dir):
    first = client.get("/keyframes/1.jpg")
    etag = first.headers["etag"]
    assert first.content == (index_dir / "keyframes/v0/00000.jpg").read_bytes()
    assert etag.startswith('"') and first.headers["cache-control"].startswith("private")
    again = client.get("/keyframes/1.jpg", headers={"if-none-match": f'W/"other", {etag}'})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get("/keyframes/1.jpg", headers={"if-none-match": '"other"'}).status_code == 200
    assert client.get("/keyframes/2.jpg").headers["etag"] != etag


def test_cached_answers_follow_each_commit(index_dir):
    """Pages and keyframes are kept per generation of the database: a commit by another connection
    (an ingest, a retrain, the CLI) is seen by the next request."""
    from vidconcept import concepts

    with Index(index_dir) as index:
        concepts.add_concept(index, "mine", positive=[1, 2], negative=[7, 8])
    with TestClient(create_app(index_dir, load_model=False), base_url="http://localhost") as client:
        params = {"q": "mine", "top": 3}
        before = client.get("/api/search", params=params).json()
        assert client.get("/api/search", params=params).json() == before  # the cached copy
        with Index(index_dir) as index:
            assert before == _page(index.search("mine", top=3))
            concepts.refine_concept(index, "mine", positive=[7, 8, 9], negative=[1, 2, 3])
            assert client.get("/api/search", params=params).json() == _page(index.search("mine", top=3))
            concepts.remove_concept(index, "mine")
        assert client.get("/api/search", params=params).status_code == 400


def _page(found) -> dict:
    from vidconcept.web.schemas import Result

    return {"results": [Result.from_record(r).model_dump() for r in found.results], "total": found.total}


def test_concurrent_misses_share_one_search(index_dir):
    """32 requests for a page the server does not hold yet cost one search."""
    import asyncio

    import httpx

    app = create_app(index_dir, load_model=False)
    calls = []
    search = app.state.library.search
    app.state.library.search = lambda *a: calls.append(a) or search(*a)

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            pages = await asyncio.gather(*(http.get("/api/search", params={"q": "cat"}) for _ in range(32)))
        return [p.json() for p in pages]

    pages = asyncio.run(main())
    assert all(p == pages[0] for p in pages) and pages[0]["results"] and len(calls) == 1
    app.state.library.close()


@pytest.mark.parametrize("header, status, body", [
    (None, 200, slice(None)),
    ("bytes=100-199", 206, slice(100, 200)),
    ("bytes=-10", 206, slice(-10, None)),
], ids=["whole", "range", "suffix"])
def test_video_range_requests(client, tmp_path, header, status, body):
    r = client.get("/videos/1", headers={"range": header} if header else {})
    assert r.status_code == status
    assert r.content == (tmp_path / "v0.mp4").read_bytes()[body]
    assert r.headers["accept-ranges"] == "bytes" and r.headers["content-type"] == "video/mp4"


def test_missing_video_file_is_404_with_advice(client):
    r = client.get("/videos/2")  # fill_store's paths do not exist
    assert r.status_code == 404 and "re-run ingest" in r.json()["detail"]
    assert client.get("/videos/99").status_code == 404


def test_page_static_files_and_schema(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/search", "/api/similar", "/api/concepts", "/api/shots/{shot_id}", "/api/videos", "/api/stats"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_no_index_is_an_error_to_act_on(tmp_path):
    with pytest.raises(IndexError_, match="run `vidconcept ingest"):
        create_app(tmp_path / "nowhere")


def test_serve_binds_loopback_by_default(index_dir, monkeypatch):
    calls, switches = [], []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append(kw))
    monkeypatch.setattr(web_app.sys, "setswitchinterval", switches.append)  # the server process's, not pytest's
    web_app.serve(index=index_dir)
    assert calls == [{"host": "127.0.0.1", "port": 8000, "log_level": "info"}]
    assert switches == [web_app.SWITCH_INTERVAL_S]


def test_image_query_with_the_wrong_model_says_what_to_do(index_dir):
    """The synthetic index has 8-d features; the default model's are wider: 503 with advice, not 500."""
    image = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(image, "JPEG")
    with TestClient(create_app(index_dir, load_model=False), base_url="http://localhost") as client:
        r = client.post("/api/similar", files={"image": ("a.jpg", image.getvalue(), "image/jpeg")})
    assert r.status_code == 503 and "--model" in r.json()["detail"]


def test_generation_follows_commits_of_other_connections(tmp_path):
    """The server's change detector: any commit by another connection, in a folder with an odd name."""
    import sqlite3

    from vidconcept.web.cache import Generation, GenerationCache

    folder = tmp_path / "odd #1 ?x %20"
    folder.mkdir()
    db = sqlite3.connect(folder / "index.db")
    db.execute("PRAGMA journal_mode = wal")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    generation, cache = Generation(folder), GenerationCache(max_items=2, max_bytes=100)
    first = generation.current()
    cache.put(first, "a", b"page", size=4)
    assert generation.current() == first and cache.get(first, "a") == b"page"
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    now = generation.current()
    assert now != first and cache.get(now, "a") is None
    cache.put(now, "c", b"x" * 101, size=101)  # too large to keep
    cache.put(first, "b", b"old", size=3)  # computed before the commit, stored after: dropped
    assert cache.get(now, "b") is None and cache.get(now, "c") is None and cache.get(first, "b") is None
    generation.close()
    db.close()

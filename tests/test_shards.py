"""Shards (issue 34): an archive split by video searches exactly like one index of the same videos.

The synthetic archive is ``conftest.fill_store``'s videos written either all into one index or
each into the shard :func:`vidconcept.shards.route` picks, with scores rounded to one decimal so
that equal scores across shards are common: the merge must order them as the single index does.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import sqlite3
import time

import pytest

from conftest import fill_store
from vidconcept import shards as shards_module
from vidconcept.api import Index
from vidconcept.cli import main
from vidconcept.errors import QueryError, ShardError, UnknownNameError, UsageError
from vidconcept.index.store import Store
from vidconcept.shards import Manifest, ShardedIndex, parse_ref, route

N_VIDEOS, SHOTS, SEED = 10, 6, 5  # ten videos: their paths sort in the order they are written

QUERIES = [
    "cat",
    "cat AND dog",
    "cat OR NOT dog",
    "NOT grass",  # a tenth of the shots score 1.0: ties across every shard
    "2*cat + night",
    "dog AND (grass OR person) NOT night",
]
PAGES = [(5, 0), (7, 3), (20, 13), (100, 0), (3, 58), (4, 1000)]


def _fill(root, only=None, decimals: int | None = 1) -> None:
    store = Store.open(root)
    try:
        fill_store(store, N_VIDEOS, SHOTS, SEED, only=only, decimals=decimals)
    finally:
        store.close()


def _fill_one(manifest: Manifest, names: list[str], v: int, decimals: int | None = 1) -> None:
    """Video ``v`` of the archive into the shard it routes to."""
    shard = next(s.path for s in manifest.shards if s.name == route(f"/videos/v{v}.mp4", names))
    _fill(shard, only=lambda x: x == v, decimals=decimals)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """(single index folder, manifest of three shards holding the same videos)."""
    base = tmp_path_factory.mktemp("shards")
    _fill(base / "single")
    manifest = ShardedIndex.init(base / "archive" / "shards.json", count=3)
    names = [s.name for s in manifest.shards]
    for v in range(N_VIDEOS):  # in the single index's order: the shards' ingest times follow it
        _fill_one(manifest, names, v)
    with Index(base / "single") as single:
        assert single.info()["shots"] == N_VIDEOS * SHOTS
    counts = [Index(s.path).info()["videos"] for s in manifest.shards]
    assert sum(counts) == N_VIDEOS and min(counts) > 0, counts  # every shard holds some
    return base / "single", manifest.path


@pytest.fixture(scope="module")
def sharded(archive):
    with ShardedIndex(archive[1]) as idx:
        yield idx


@pytest.fixture(scope="module")
def single(archive):
    with Index(archive[0]) as idx:
        yield idx


def _rows(results) -> list[tuple]:
    """What a page shows, independent of shot ids: video, shot, score, in order."""
    return [(r.video, r.shot_index, r.score) for r in results]


@pytest.mark.parametrize("top,offset", PAGES, ids=[f"top{t}-offset{o}" for t, o in PAGES])
@pytest.mark.parametrize("query", QUERIES)
def test_search_equals_one_index(single, sharded, query, top, offset):
    want = single.search(query, top=top, offset=offset)
    got = sharded.search(query, top=top, offset=offset)
    assert _rows(got) == _rows(want)
    assert got.total == want.total and got.complete
    for hit in got:  # ids map to (shard, shot): the shard that holds the video, its own shot id
        assert hit.shard == route(hit.video, list(sharded.shards))
        assert hit.ref == (hit.shard, hit.shot_id)


def test_ties_across_shards_are_merged_as_one_index(single, sharded):
    want = single.search("NOT grass", top=1000)
    tied = [r for r in want if r.score == want[0].score]
    assert len({route(r.video, list(sharded.shards)) for r in tied}) > 1  # the case is really tested
    assert _rows(sharded.search("NOT grass", top=1000)) == _rows(want)


@pytest.mark.parametrize("min_score", [0.0, 0.3, 0.85])
def test_min_score_and_totals(single, sharded, min_score):
    want = single.search("cat OR dog", top=10, min_score=min_score)
    got = sharded.search("cat OR dog", top=10, min_score=min_score)
    assert _rows(got) == _rows(want) and got.total == want.total


def test_deep_pages_are_read_in_steps(single, sharded, monkeypatch):
    monkeypatch.setattr(shards_module, "PAGE", 4)  # a shard reads offset + top shots 4 at a time
    for top, offset in [(5, 0), (9, 11), (30, 30)]:
        want = single.search("NOT cat", top=top, offset=offset)
        got = sharded.search("NOT cat", top=top, offset=offset)
        assert _rows(got) == _rows(want) and got.total == want.total


def test_one_video(single, sharded):
    video = single.videos()[3]
    want = single.search("NOT dog", top=50, video=video["id"])
    name = route(video["path"], list(sharded.shards))
    with Index(sharded.shards[name].path) as shard:
        local = next(v["id"] for v in shard.videos() if v["path"] == video["path"])
    got = sharded.search("NOT dog", top=50, video=f"{name}:{local}")
    assert _rows(got) == _rows(want) and got.total == want.total == SHOTS


def _ref_of(sharded, video: str, shot_index: int) -> tuple[str, int]:
    name = route(video, list(sharded.shards))
    with Index(sharded.shards[name].path) as shard:
        hits = shard.search("cat OR NOT cat", top=1000)
        hit = next(h for h in hits if (h.video, h.shot_index) == (video, shot_index))
    return name, hit.shot_id


@pytest.mark.parametrize("shot", [0, 17, 41])
@pytest.mark.parametrize("top", [1, 5, 59])
def test_similar_merges_by_distance(single, sharded, shot, top):
    row = single.shot(shot + 1)[0]  # single-index ids start at 1
    want = single.similar(shot=row.shot_id, top=top)
    got = sharded.similar(shot=_ref_of(sharded, row.video, row.shot_index), top=top)
    assert _rows(got) == _rows(want) and got.total == want.total
    assert (row.video, row.shot_index) not in {(r.video, r.shot_index) for r in got}


def test_counts_add_up(single, sharded):
    info = sharded.info()
    assert (info["videos"], info["shots"]) == (N_VIDEOS, N_VIDEOS * SHOTS) and info["unavailable"] == []
    assert sorted(s["name"] for s in info["shards"]) == sorted(sharded.shards)
    want = {c["name"]: c["shots"] for c in single.concepts(0.5)}
    assert {c["name"]: c["shots"] for c in sharded.concepts(0.5)} == want


@pytest.mark.parametrize("query,error", [("cat AND (dog", QueryError), ("kat", UnknownNameError)])
def test_a_bad_query_is_the_users_error_not_a_shards(sharded, query, error):
    with pytest.raises(error):
        sharded.search(query)


@pytest.mark.parametrize("kwargs", [{"top": 0}, {"offset": -1}, {"top": 10_001}])
def test_bad_pages(sharded, kwargs):
    with pytest.raises(UsageError):
        sharded.search("cat", **kwargs)


@pytest.mark.parametrize("ref", ["nope:1", "shard-00", "shard-00:x"])
def test_bad_shot_refs(sharded, ref):
    with pytest.raises((UsageError, UnknownNameError)):
        sharded.similar(shot=ref)


def test_records_only_for_the_page_and_ties(tmp_path, monkeypatch):
    """Shards rank first; records are built for the page's shots (and cross-shard ties), not for
    every shot each shard ranked."""
    manifest = ShardedIndex.init(tmp_path / "shards.json", count=2)
    names = [s.name for s in manifest.shards]
    for v in range(8):  # unrounded scores: no ties
        _fill_one(manifest, names, v, decimals=None)
    asked = []
    real = shards_module.ShardServer.records
    monkeypatch.setattr(shards_module.ShardServer, "records",
                        lambda self, ranked: asked.append(len(ranked)) or real(self, ranked))
    with ShardedIndex(manifest.path) as idx:
        page = idx.search("cat OR dog", top=5, offset=10)
    assert len(page) == 5 and sum(asked) == 5


# ---- a shard that is gone or does not answer ------------------------------------------------------
def _without(archive, tmp_path, gone: str):
    """A copy of the archive's manifest whose shard ``gone`` points at a folder that does not exist."""
    manifest = Manifest.load(archive[1])
    shards = tuple(s if s.name != gone else shards_module.Shard(s.name, tmp_path / "gone") for s in manifest.shards)
    copy = Manifest(tmp_path / "shards.json", shards)
    copy.save()
    return copy.path


def test_a_missing_shard_is_a_clear_error(archive, tmp_path):
    with pytest.raises(ShardError, match="shard 'shard-01'.*partial"):
        ShardedIndex(_without(archive, tmp_path, "shard-01"))


def test_partial_results_name_the_missing_shard(archive, sharded, tmp_path):
    with ShardedIndex(_without(archive, tmp_path, "shard-01"), partial=True) as idx:
        got = idx.search("NOT grass", top=1000)
        assert got.unavailable == ["shard-01"] and not got.complete
        assert {h.shard for h in got} == {"shard-00", "shard-02"}
        full = sharded.search("NOT grass", top=1000)
        assert _rows(got) == [r for r in _rows(full) if route(r[0], list(sharded.shards)) != "shard-01"]
        assert idx.info()["unavailable"] == ["shard-01"]
        with pytest.raises(ShardError, match="unavailable"):
            idx.ingest([tmp_path])


def _broken(idx: ShardedIndex, name: str, fault):
    """Make one locally served shard's ranking ``fault``."""
    server = idx._clients[name].server.result()
    server.rank = fault


def test_a_shard_failing_or_slow_at_query_time(archive):
    def fails(*args):
        raise sqlite3.OperationalError("disk I/O error")

    def hangs(*args):
        time.sleep(1.5)

    with ShardedIndex(archive[1], timeout=0.3) as idx:
        _broken(idx, "shard-02", fails)
        with pytest.raises(ShardError, match="shard 'shard-02'.*disk I/O error"):
            idx.search("cat")
        _broken(idx, "shard-02", hangs)
        with pytest.raises(ShardError, match="did not answer within 0.3 s"):
            idx.search("cat")
        idx.partial = True
        got = idx.search("cat", top=100)
        assert got.unavailable == ["shard-02"] and all(h.shard != "shard-02" for h in got)


# ---- manifest and routing -------------------------------------------------------------------------
def test_routing_is_stable_and_balanced():
    names = [f"shard-{i:02d}" for i in range(4)]
    keys = [f"/archive/{i:05d}.mp4" for i in range(4000)]
    placed = [route(k, names) for k in keys]
    assert placed == [route(k, list(reversed(names))) for k in keys]  # not the list's order: the names
    assert all(800 < placed.count(n) < 1200 for n in names)
    moved = sum(a != route(k, names + ["shard-04"]) for a, k in zip(placed, keys))
    assert 0 < moved < 1100  # a fifth shard takes about a fifth, the others stay


def test_init_refuses_to_overwrite_and_bad_input(tmp_path):
    ShardedIndex.init(tmp_path / "a.json", count=2)
    assert [s.name for s in Manifest.load(tmp_path / "a.json").shards] == ["shard-00", "shard-01"]
    with pytest.raises(UsageError, match="exists"):
        ShardedIndex.init(tmp_path / "a.json", count=2)
    with pytest.raises(UsageError):
        ShardedIndex.init(tmp_path / "b.json", count=0)
    with pytest.raises(UsageError):
        ShardedIndex.init(tmp_path / "c.json")
    with pytest.raises(Exception, match="no index here"):
        ShardedIndex.init(tmp_path / "d.json", paths=[tmp_path / "nothing"])
    assert not (tmp_path / "d.json").exists()


@pytest.mark.parametrize("text,match", [
    ("{", "not a readable"), ('{"shards": []}', "not a shard manifest"),
    ('{"format": "vidconcept-shards", "shards": []}', "lists no shard"),
    ('{"format": "vidconcept-shards", "shards": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]}', "unique"),
])
def test_bad_manifests(tmp_path, text, match):
    (tmp_path / "m.json").write_text(text)
    with pytest.raises(UsageError, match=match):
        Manifest.load(tmp_path / "m.json")


def test_shot_refs():
    assert parse_ref("shard-01:42") == parse_ref(("shard-01", 42)) == ("shard-01", 42)


def test_existing_indexes_become_shards(archive, tmp_path):
    """Indexes made apart are searched together (their videos adopted in ingest order)."""
    Index(tmp_path / "empty", create=True).close()
    manifest = ShardedIndex.init(tmp_path / "both.json", paths=[archive[0], tmp_path / "empty"])
    assert [s.name for s in manifest.shards] == ["single", "empty"]
    with ShardedIndex(manifest.path) as idx, Index(archive[0]) as single:
        assert _rows(idx.search("NOT grass", top=100)) == _rows(single.search("NOT grass", top=100))


# ---- the CLI mirrors the API ----------------------------------------------------------------------
def test_cli(archive, sharded, tmp_path, capsys):
    assert main(["shards", "search", str(archive[1]), "NOT grass", "--top", "7", "--offset", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = sharded.search("NOT grass", top=7, offset=2)
    assert out["total"] == want.total and out["unavailable"] == []
    assert [(r["shard"], r["shot_id"], r["score"]) for r in out["results"]] == [(*h.ref, h.score) for h in want]
    ref = f"{want[0].shard}:{want[0].shot_id}"
    assert main(["shards", "similar", str(archive[1]), "--shot", ref, "--top", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 3
    assert main(["shards", "info", str(archive[1]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shots"] == N_VIDEOS * SHOTS
    assert main(["shards", "init", str(tmp_path / "new.json"), "--count", "2"]) == 0
    assert (tmp_path / "shard-01").is_dir()
    assert main(["shards", "search", str(tmp_path / "missing.json"), "cat"]) == 2
    assert "no shard manifest" in capsys.readouterr().err


# ---- real videos through the ingest ---------------------------------------------------------------
def _split(results) -> tuple[list, list]:
    rows = sorted(_rows(results))
    return [r[:2] for r in rows], [r[2] for r in rows]


@pytest.mark.slow
@pytest.mark.logs_errors  # the missing folder is logged as one failed file
def test_ingest_routes_each_video_to_its_shard(photo_videos, tmp_path, capsys):
    """Copies of the photo videos, placed so that each shard gets one of each: the sharded ingest
    finds what one index of the folder finds, and a second run (through the CLI) changes nothing."""
    import skimage.data

    folder = tmp_path / "videos"
    folder.mkdir()
    names = ["shard-00", "shard-01"]
    for source in ("a", "b"):
        placed: dict[str, object] = {}
        for i in range(64):
            path = folder / f"{source}{i}.mp4"
            placed.setdefault(route(str(path.resolve()), names), path)
        for path in placed.values():
            shutil.copy(photo_videos / f"{source}.mp4", path)
    photo = skimage.data.chelsea()
    with Index(tmp_path / "single", create=True) as one:
        one.ingest([folder], workers=1)
        want = {q: one.search(q, top=50) for q in ("tabby", "NOT tabby", "espresso OR tabby")}
        want_similar = one.similar(image=photo, top=6)
    manifest = ShardedIndex.init(tmp_path / "archive" / "shards.json", count=2)
    with ShardedIndex(manifest.path) as archive:
        summary = archive.ingest([folder, tmp_path / "nothing-here"], workers=1)
        assert summary.count("indexed") == 4 and [f.reason for f in summary.failed] == ["no such file or folder"]
        info = archive.info()
        assert [s["videos"] for s in info["shards"]] == [2, 2]
        for query, page in want.items():
            got = archive.search(query, top=50)
            assert got.total == page.total
            (videos, scores), (videos_want, scores_want) = _split(got), _split(page)
            assert videos == videos_want and scores == pytest.approx(scores_want, abs=1e-4)  # the model's float noise
            assert all(h.shard == route(h.video, names) for h in got)
        got = archive.similar(image=photo, top=6)  # one embedding per shard, the model shared
        (videos, scores), (videos_want, scores_want) = _split(got), _split(want_similar)
        assert videos == videos_want and scores == pytest.approx(scores_want, abs=1e-4)
    assert main(["shards", "ingest", str(manifest.path), str(folder), "--workers", "1", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["unchanged"] == 4 and again["videos"] == 0


# ---- served through Ray ---------------------------------------------------------------------------
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the ray extra is not installed: pip install 'vidconcept[ray]'")


@pytest.fixture(scope="module")
def ray_runtime():
    """One small local Ray runtime for the module's Ray tests (it takes seconds to start)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@needs_ray
@pytest.mark.slow
def test_ray_actors_answer_as_local_threads(archive, sharded, ray_runtime):
    with ShardedIndex(archive[1], serve="ray", timeout=120) as remote:
        for query in ("NOT grass", "2*cat + night"):
            want = sharded.search(query, top=25, offset=4)
            got = remote.search(query, top=25, offset=4)
            assert [(h.ref, h.score) for h in got] == [(h.ref, h.score) for h in want] and got.total == want.total
        ref = want[0].ref
        assert [h.ref for h in remote.similar(shot=ref, top=7)] == [h.ref for h in sharded.similar(shot=ref, top=7)]
        assert remote.info()["shots"] == N_VIDEOS * SHOTS
        with pytest.raises(QueryError):
            remote.search("cat AND (")
        ray_runtime.kill(remote._clients["shard-01"].actor)  # a shard's process dies
        with pytest.raises(ShardError, match="shard 'shard-01'"):
            remote.search("cat")
        remote.partial = True
        got = remote.search("cat", top=100)
        assert got.unavailable == ["shard-01"] and {h.shard for h in got} == {"shard-00", "shard-02"}

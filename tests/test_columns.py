"""The column store (issue 23): the same pages and totals as ranking the exact scores,
kept consistent with SQLite through writes, crashes and concurrent readers."""
from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import CONCEPTS, fill_store
from vidconcept.api import Index
from vidconcept.index import columns
from vidconcept.index.store import SCORE_FLOOR, ShotData, Store
from vidconcept.search.query import parse
from vidconcept.search.rank import ColumnCache, evaluate, rank, rank_columns, resolve_concepts


def reference(store: Store, text: str, top: int, offset: int = 0, min_score: float = 0.0,
              within=None) -> tuple[list[tuple[int, float]], int]:
    """The plain definition: every shot's exact score (0 where none is stored), best first, ties by id."""
    node = parse(text)
    ids = store.shot_ids() if within is None else np.asarray(sorted(within), np.int64)
    cols = {}
    for name, cid in resolve_concepts(store, node).items():
        sid, sc = store.concept_column(cid)
        col = np.zeros(max(store.max_shot_id(), 1) + 1, np.float32)
        col[sid] = sc
        cols[name] = col[ids]
    score = evaluate(node, cols)
    floor = max(min_score, 1e-12)
    hits = sorted(((float(s), int(i)) for i, s in zip(ids, score) if s >= floor), key=lambda t: (-t[0], t[1]))
    return [(i, s) for s, i in hits[offset : offset + top]], len(hits)


@contextlib.contextmanager
def read_snapshot(store: Store):
    """One read transaction: a writer's commits during it stay out of sight (WAL)."""
    store.db.execute("BEGIN")
    try:
        yield
    finally:
        store.db.execute("COMMIT")


QUERIES = ["cat", "dog", "night", "NOT night", "cat AND dog", "cat OR dog OR grass", "cat AND (dog OR grass)",
           "cat AND dog NOT night", "2*cat + grass", "person AND NOT (cat OR 3*dog + night)", "NOT NOT cat",
           "0.5*cat + 0.5*dog AND NOT grass"]


def _fill_ties(store: Store, n: int = 600, seed: int = 1) -> None:
    """Shots whose scores share bins, repeat exactly, saturate at 0 and 1 and sit at the floor."""
    rng = np.random.default_rng(seed)
    cids = store.ensure_concepts(CONCEPTS)
    store.set_meta("feature_dim", 4)
    pool = np.array([0.0, SCORE_FLOOR, 0.0005, 0.0039, 0.004, 0.5, 0.49999, 0.5001, 0.999, 0.9999, 1.0,
                     *(rng.random(20))], np.float32)
    for v in range(n // 100):
        scores = rng.choice(pool, size=(100, len(CONCEPTS))).astype(np.float32)
        shots = [ShotData(i, i, i + 1, i, i + 1.0, None) for i in range(100)]
        store.replace_video({"path": f"/t/{v}.mp4"}, shots, scores, [cids[c] for c in CONCEPTS],
                            rng.normal(size=(100, 4)).astype(np.float32))


@pytest.mark.parametrize("fill", ["random", "ties"])
def test_pages_and_totals_equal_the_reference(store, fill):
    fill_store(store, n_videos=6, shots_per_video=50) if fill == "random" else _fill_ties(store)
    cs = columns.open_columns(store)
    one_video = store.shot_ids_of(2)
    for text, (top, offset), min_score in itertools.product(QUERIES, [(10, 0), (7, 13), (500, 0)], [0.0, 0.5, 0.999]):
        node = parse(text)
        ids = resolve_concepts(store, node)
        want = reference(store, text, top, offset, min_score)
        got = rank(store, node, top, offset, min_score, columns=columns.Columns(store))
        assert got == want, (text, top, offset, min_score)
        assert rank_columns(cs, node, ids, top, offset, max(min_score, 1e-12)) == want
        within = reference(store, text, top, offset, min_score, within=one_video)
        assert rank_columns(cs, node, ids, top, offset, max(min_score, 1e-12), within=one_video) == within
        # Today's SQLite path agrees too (no column store given).
        assert rank(store, node, top, offset, min_score, cache=ColumnCache(store)) == want


def test_codes_keep_order_and_bounds():
    s = np.r_[0.0, SCORE_FLOOR, np.sort(np.random.default_rng(0).random(5000)), 1.0].astype(np.float32)
    codes = columns.encode(s)
    assert codes[0] == 0 and codes[-1] == 255 and (codes[1:-1] >= 1).all() and (codes[1:-1] <= 254).all()
    assert (np.diff(codes.astype(int)) >= 0).all()  # monotone
    assert (columns.LOWER[codes] <= s).all() and (s <= columns.UPPER[codes]).all()
    assert (columns.UPPER - columns.LOWER).max() == pytest.approx(1 / 254)


def test_store_follows_writes_and_user_concepts(filled):
    store, _ = filled
    view = columns.Columns(store)
    first = view.get()
    assert first is not None and len(first) == store.shot_count()
    # A write moves the generation: the old store is stale, a reader rebuilds (no writer runs).
    fill_store(store, n_videos=1, shots_per_video=3, seed=5)  # replaces /videos/v0.mp4
    second = view.get()
    assert second.generation > first.generation and len(second) == store.shot_count()
    assert set(second.ids.tolist()) == set(store.shot_ids().tolist())
    # A user concept's column is written alone, and dropped alone.
    before = store.scores_generation()
    ids = store.shot_ids()
    cid = store.write_concept("forest", "user", "now", "{}", ids, np.linspace(0, 1, len(ids), dtype=np.float32))
    columns.replace_concept(store, before, cid, ids, np.linspace(0, 1, len(ids), dtype=np.float32))
    third = columns.read(store.root)
    assert third.generation == store.scores_generation() and third.has(cid)
    assert third.files[store.concept_ids()["cat"]] == second.files[store.concept_ids()["cat"]]  # reused
    assert rank(store, parse("forest"), 3, columns=view) == reference(store, "forest", 3)
    before = store.scores_generation()
    store.delete_concept(cid)
    columns.drop_concept(store, before, cid)
    assert not columns.read(store.root).has(cid)


def test_stale_or_corrupt_store_is_rebuilt(filled):
    store, _ = filled
    cs = columns.open_columns(store)
    name = cs.files[store.concept_ids()["dog"]]
    (cs.folder / name).write_bytes(b"x")  # truncated
    assert columns.read(store.root) is None
    rebuilt = columns.open_columns(store)
    assert rebuilt.generation == store.scores_generation() and rebuilt.files != cs.files
    assert name not in {p.name for p in rebuilt.folder.iterdir()}  # files no manifest names are deleted


def test_writer_running_means_readers_use_the_last_published_store(filled, monkeypatch):
    """While an ingest writes, a reader answers from the store the writer published last: never
    through SQLite, never rebuilding it itself."""
    store, _ = filled
    published = columns.open_columns(store)
    fill_store(store, n_videos=1, shots_per_video=2, seed=9)  # the database moved on
    monkeypatch.setattr(columns, "writer_running", lambda root: True)
    view = columns.Columns(store)
    cs = view.get()
    assert cs is not None and cs.generation == published.generation < store.scores_generation()
    monkeypatch.setattr(ColumnCache, "columns", lambda *a: pytest.fail("ranked through SQLite"))
    hits, total = rank(store, parse("cat OR dog"), 5, columns=view)
    assert {i for i, _ in hits} <= set(cs.ids.tolist()) and total > 0
    assert columns.read(store.root).generation == published.generation  # not rebuilt by the reader


def test_index_api_uses_the_store_and_concept_counts(filled):
    store, scores = filled
    with Index(store.root) as idx:
        page = idx.search("cat AND NOT night", top=4)
        want = reference(store, "cat AND NOT night", 4)
        assert [(r.shot_id, r.score) for r in page] == [(i, round(s, 6)) for i, s in want[0]]
        assert page.total == want[1]
        assert columns.read(store.root) is not None
        counts = {c["name"]: c["shots"] for c in idx.concepts(min_score=0.5)}
        sql = dict(store.db.execute("SELECT c.name, count(*) FROM scores s JOIN concepts c ON c.id = s.concept_id "
                                    "WHERE score >= 0.5 GROUP BY c.name"))
        assert counts == {n: sql.get(n, 0) for n in CONCEPTS}


WRITER = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from conftest import fill_store
from vidconcept.index.columns import open_columns
from vidconcept.index.lock import write_lock
from vidconcept.index.store import Store
from pathlib import Path
store = Store.open({root!r})
with write_lock(Path({root!r})):
    for seed in range(10_000):  # keeps writing (one video per transaction) until killed
        fill_store(store, n_videos=1 + seed % 4, shots_per_video=20, seed=seed)
        if seed == 3:
            open_columns(store)  # the store is current once, mid-way
        print(seed, flush=True)
"""


def test_kill_9_during_writes_leaves_the_store_stale_then_consistent(store, tmp_path):
    """The store after ``kill -9`` of a writer mid-way: never ahead of SQLite, detected
    stale, rebuilt equal to what SQLite holds, and searches equal the reference all along."""
    fill_store(store, n_videos=3, shots_per_video=20)
    columns.open_columns(store)
    root = str(store.root)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(tests=str(Path(__file__).parent), root=root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    reader = Store.open(root)
    view = columns.Columns(reader)
    seen = 0
    try:
        for line in proc.stdout:
            seen = int(line.split()[0])
            # While the writer runs, a reader uses the last published store, never rebuilds
            # it, and the store is never ahead of the database.
            cs = view.get()
            assert cs is None or cs.generation <= reader.scores_generation()
            on_disk = columns.read(Path(root))
            assert on_disk is None or on_disk.generation <= reader.scores_generation()
            with read_snapshot(reader):  # the column store and SQLite as of one commit
                got = rank(reader, parse("cat AND NOT dog"), 5, columns=view)
                cs = view.current
                if cs is None or cs.generation == reader.scores_generation():
                    assert got == reference(reader, "cat AND NOT dog", 5)
                else:  # the last published store, behind the database: its shots only
                    assert {i for i, _ in got[0]} <= set(cs.ids.tolist())
            if seen >= 6:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert seen >= 6
    on_disk = columns.read(Path(root))
    assert on_disk is not None and on_disk.generation < reader.scores_generation()  # stale, detected
    assert not columns.fresh(reader, on_disk)
    healed = view.get()  # no writer now: the reader rebuilds it
    assert healed is not None and healed.generation == reader.scores_generation()
    assert healed.ids.tolist() == sorted(reader.shot_ids().tolist())
    for cid in reader.concept_ids().values():
        sid, sc = reader.concept_column(cid)
        np.testing.assert_array_equal(healed.codes(cid), columns.encode(columns.scatter(healed.ids, sid, sc)))
    for text in QUERIES:
        assert rank(reader, parse(text), 10, columns=view) == reference(reader, text, 10)
    reader.close()


def _video(store: Store, path: str, n: int, seed: int) -> tuple[list[int], np.ndarray, list[int], list[int]]:
    rng = np.random.default_rng(seed)
    cids = [store.concept_ids()[c] for c in CONCEPTS]
    scores = rng.random((n, len(CONCEPTS))).astype(np.float32) ** 3  # some below the storage floor
    shots = [ShotData(i, i, i + 1, i, i + 1.0, None) for i in range(n)]
    written = store.replace_video({"path": path}, shots, scores, cids, rng.normal(size=(n, 8)).astype(np.float32))
    return written.shot_ids, scores, cids, written.removed


@pytest.mark.parametrize("untracked", [False, True])
def test_update_after_a_writers_videos_equals_a_rebuild(filled, untracked):
    store, _ = filled
    columns.open_columns(store)
    update = columns.Update(store)
    for path, n, seed in [("/videos/v1.mp4", 6, 1), ("/videos/new.mp4", 9, 2), ("/videos/v0.mp4", 2, 3)]:
        update.before_write()
        update.wrote(*_video(store, path, n, seed))
    if untracked:  # a write the update did not see: it rebuilds instead
        _video(store, "/videos/other.mp4", 3, 4)
    cs = update.finish()
    assert cs.generation == store.scores_generation() and cs.digest == store.shot_digest()
    assert cs.ids.tolist() == sorted(store.shot_ids().tolist())
    for cid in store.concept_ids().values():
        np.testing.assert_array_equal(cs.codes(cid), columns.encode(columns.scatter(cs.ids, *store.concept_column(cid))))
        np.testing.assert_array_equal(cs.histogram(cid), np.bincount(cs.codes(cid), minlength=256))
    for text in QUERIES:
        assert rank(store, parse(text), 10, columns=columns.Columns(store)) == reference(store, text, 10)


def test_concept_counts_at_bin_edges_and_between(store):
    _fill_ties(store)
    cs = columns.open_columns(store)
    for cid in store.concept_ids().values():
        sid, sc = store.concept_column(cid)
        for floor in (1e-12, SCORE_FLOOR, 0.0039, 0.004, 0.49999, 0.5, 0.50005, 0.999, 1.0):
            assert cs.count(cid, floor) == int(np.count_nonzero(sc >= floor)), floor


def test_exact_scores_come_from_the_packed_rows(filled):
    """The column store holds 8-bit codes only; exact scores at any rows are the database's."""
    store, _ = filled
    cs = columns.open_columns(store)
    assert all(not name.endswith(".f32") for name in os.listdir(cs.folder))
    cids = list(store.concept_ids().values())
    for rows in ([0], [len(cs) - 1, 0, 3, 3], list(range(0, len(cs), 5)), list(range(len(cs))), []):
        got = cs.exact_rows(np.asarray(rows, np.int64), cids)
        for cid in cids:
            np.testing.assert_array_equal(got[cid], columns.scatter(cs.ids, *store.concept_column(cid))[rows])
    ids = cs.ids
    np.testing.assert_array_equal(cs.positions(np.array([ids[0], ids[2], 10**9])), [0, 2])


def test_background_rebuild_answers_through_sqlite_meanwhile(filled):
    store, _ = filled
    columns.open_columns(store)
    fill_store(store, n_videos=1, shots_per_video=4, seed=3)  # stale now
    view = columns.Columns(store, background=True)
    assert view.get() is None  # not rebuilt before answering
    assert rank(store, parse("cat OR night"), 5, columns=view) == reference(store, "cat OR night", 5)
    view._builder.join(30)
    cs = view.get()
    assert cs is not None and cs.generation == store.scores_generation()

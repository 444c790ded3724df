"""Issue 34: an index written by the previous release (one SQLite row per shot and concept)
opens, migrates to packed per-shot scores, loses nothing and answers every query as before,
also when the migration is interrupted and run again."""
from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from vidconcept.api import Index
from vidconcept.index import migrations
from vidconcept.index.store import SCORE_FLOOR, Store

CONCEPTS = ["cat", "dog", "night", "grass", "person"]
QUERIES = ["cat", "night", "NOT night", "cat AND dog", "cat OR dog OR grass", "cat AND dog NOT night",
           "2*cat + grass", "person AND NOT (cat OR 3*dog + night)", "mine", "mine OR cat"]


def make_v4_index(root: Path, n_videos: int = 6, shots: int = 40, seed: int = 0) -> None:
    """An index as release 4 wrote it: the ``scores`` table, a user concept, a deleted concept's
    id gap, a staged (unfinished) upgrade, float16 features."""
    root.mkdir(parents=True)
    db = sqlite_utils.Database(sqlite3.connect(root / "index.db"))
    db.execute("PRAGMA synchronous = OFF")
    for version, _, fn in migrations.MIGRATIONS:
        if version <= 4:
            with db.atomic():
                fn(db)
    db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '4'), ('scores_generation', '7'), "
               "('feature_dim', '8')")
    rng = np.random.default_rng(seed)
    for i, name in enumerate(CONCEPTS + ["gone", "mine"]):
        db["concepts"].insert({"id": i + 1, "name": name, "source": "user" if name == "mine" else "model",
                               "created_at": "2026-01-01", "info": json.dumps({"positive": [1, 2]}) if name == "mine"
                               else None})
    db.execute("DELETE FROM concepts WHERE name = 'gone'")  # its id (6) stays a gap; its rows are orphans
    shot_id = 0
    for v in range(n_videos):
        vid = db["videos"].insert({"path": f"/v/{v}.mp4", "status": "indexed", "duration_s": 10.0}).last_pk
        for i in range(shots):
            shot_id += 1
            db.execute("INSERT INTO shots (id, video_id, idx, start_frame, end_frame, start_s, end_s) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", [shot_id, vid, i, i, i + 1, i, i + 1.0])
            scores = rng.random(7).astype(np.float32) ** 2
            scores[rng.random(7) < 0.1] = rng.choice(np.array([0.5, 1.0, 0.25], np.float32))  # exact ties
            for cid, s in zip(range(1, 8), scores):
                if s >= SCORE_FLOOR:  # as release 4 stored them (REAL of a float32)
                    db.execute("INSERT INTO scores VALUES (?, ?, ?)", [shot_id, cid, float(s)])
            db.execute("INSERT INTO features (shot_id, vector, norm) VALUES (?, ?, ?)",
                       [shot_id, rng.normal(size=8).astype(np.float16).tobytes(), 1.0])
    # an upgrade that staged two videos before it was interrupted
    db.execute("INSERT INTO meta (key, value) VALUES ('upgrade', ?)", [json.dumps({"to": {"name": "x"}})])
    for pos, name in enumerate(["cat", "dog", "new"]):
        db.execute("INSERT INTO upgrade_concepts VALUES (?, ?)", [pos, name])
    for sid in range(1, shots * 2 + 1):
        for pos in range(3):
            db.execute("INSERT INTO upgrade_scores VALUES (?, ?, ?)", [sid, pos, float(np.float32(sid / 1000 + pos))])
    db.conn.commit()
    db.close()


def old_rows(root: Path) -> dict[tuple[int, str], float]:
    """(shot, concept) → score as release 4 stored them (live concepts only)."""
    con = sqlite3.connect(root / "index.db")
    rows = con.execute("SELECT s.shot_id, c.name, s.score FROM scores s JOIN concepts c ON c.id = s.concept_id")
    out = {(sid, name): score for sid, name, score in rows}
    con.close()
    return out


def reference(rows: dict[tuple[int, str], float], shots: list[int], text: str, top: int, min_score: float):
    """Release 4's exact ranking: every shot scored by the query over its stored scores (0 where none)."""
    from vidconcept.search.query import parse
    from vidconcept.search.rank import evaluate

    node = parse(text)
    cols = {name: np.array([rows.get((s, name), 0.0) for s in shots], np.float32) for name in CONCEPTS + ["mine"]}
    score = evaluate(node, cols)
    hits = sorted(((float(v), s) for s, v in zip(shots, score) if v >= max(min_score, 1e-12)),
                  key=lambda t: (-t[0], t[1]))
    return [(s, round(v, 6)) for v, s in hits[:top]], len(hits)


def check_same(root: Path, rows: dict, shots: list[int]) -> None:
    with Index(root) as idx:
        for text, top, min_score in itertools.product(QUERIES, [5, 300], [0.0, 0.5]):
            page = idx.search(text, top=top, min_score=min_score)
            assert ([(r.shot_id, r.score) for r in page], page.total) == reference(rows, shots, text, top, min_score)
        # every stored score, through the old table's name (a view now)
        got = {(sid, name): score for sid, name, score in idx.store.db.execute(
            "SELECT s.shot_id, c.name, s.score FROM scores s JOIN concepts c ON c.id = s.concept_id")}
        assert got == rows
        for sid in shots[:10]:
            assert idx.store.shot_scores(sid) == {n: v for (s, n), v in sorted(rows.items(), key=lambda t: -t[1])
                                                  if s == sid}


def test_a_release_4_index_migrates_and_answers_the_same(tmp_path):
    root = tmp_path / "old"
    make_v4_index(root)
    rows = old_rows(root)
    concepts_before = sqlite3.connect(root / "index.db").execute(
        "SELECT id, name, source, created_at, info FROM concepts ORDER BY id").fetchall()
    store = Store.open(root)
    assert migrations.schema_version(store.db) == migrations.LATEST
    # vacuumed at the larger page size (nothing else had it open), back in WAL mode
    assert store.db.execute("PRAGMA page_size").fetchone()[0] == migrations.PAGE_SIZE
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = set(store.db.table_names())
    assert "shot_scores" in tables and "scores" not in tables and "upgrade_scores" not in tables
    assert store.db.execute("SELECT id, name, source, created_at, info FROM concepts ORDER BY id").fetchall() \
        == concepts_before  # user concepts and their labels untouched
    # the staged upgrade, packed by position: still there to resume
    staged = store.db.execute("SELECT shot_id, scores FROM upgrade_shot_scores ORDER BY shot_id").fetchall()
    assert len(staged) == 80 and np.frombuffer(staged[4][1], np.float32).tolist() == pytest.approx(
        [np.float32(5 / 1000), np.float32(5 / 1000 + 1), np.float32(5 / 1000 + 2)])
    assert store.get_meta("upgrade") == {"to": {"name": "x"}}
    shots = sorted(store.shot_ids().tolist())
    store.close()
    check_same(root, rows, shots)
    # a concept added after a deletion gets a new slot, never the deleted concept's
    store = Store.open(root)
    mine = store.slots()[store.concept_ids()["mine"]]
    store.delete_concept(store.concept_ids()["mine"])
    cid = store.ensure_concepts(["fresh"])["fresh"]
    assert store.slots()[cid] == max(store.slots().values()) > mine
    assert store.shot_scores(shots[0]).keys() <= set(CONCEPTS)
    store.close()


def test_an_interrupted_migration_resumes_and_loses_nothing(tmp_path, monkeypatch):
    root = tmp_path / "old"
    make_v4_index(root)
    rows = old_rows(root)
    monkeypatch.setattr(migrations, "PACK_CHUNK", 17)
    calls = {"n": 0}
    real = migrations._write_packed

    def crash_on_the_fourth_chunk(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        return real(*args)

    monkeypatch.setattr(migrations, "_write_packed", crash_on_the_fourth_chunk)
    with pytest.raises(KeyboardInterrupt):
        Store.open(root)
    con = sqlite3.connect(root / "index.db")
    packed = con.execute("SELECT count(*) FROM shot_scores").fetchone()[0]
    left = con.execute("SELECT count(DISTINCT shot_id) FROM scores").fetchone()[0]
    version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    con.close()
    assert packed == 3 * 17 and left == 240 - packed and version == "4"  # three chunks committed, the rest not
    monkeypatch.setattr(migrations, "_write_packed", real)
    store = Store.open(root)  # resumes
    assert migrations.schema_version(store.db) == migrations.LATEST
    shots = sorted(store.shot_ids().tolist())
    store.close()
    check_same(root, rows, shots)

"""Schema migrations: the only place the index schema changes.

Each migration is a function registered with :func:`migration`, applied once, in
order, inside one transaction, and recorded in ``meta.schema_version``. A migration
that rewrites every shot (``resumable=True``) commits in chunks instead and must be
safe to run again after a crash: it finds where it stopped from the data. An index
written by a newer vidconcept (higher version than we know) is refused rather than
guessed at.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import numpy as np
import sqlite_utils

from ..errors import IndexError_

log = logging.getLogger(__name__)

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[int, str, Migration]] = []
#: Versions whose migration commits in chunks itself (see the module docstring).
RESUMABLE: set[int] = set()


def migration(version: int, *, resumable: bool = False) -> Callable[[Migration], Migration]:
    """Register ``fn`` as the migration that brings the schema to ``version``."""

    def register(fn: Migration) -> Migration:
        if any(v == version for v, _, _ in MIGRATIONS):
            raise ValueError(f"duplicate migration version {version}")
        MIGRATIONS.append((version, fn.__name__, fn))
        MIGRATIONS.sort(key=lambda m: m[0])
        if resumable:
            RESUMABLE.add(version)
        return fn

    return register


LATEST = 5


@migration(1)
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE videos (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            content_hash TEXT,
            size INTEGER,
            mtime REAL,
            duration_s REAL,
            fps REAL,
            frames INTEGER,
            width INTEGER,
            height INTEGER,
            status TEXT NOT NULL DEFAULT 'indexed',
            error TEXT,
            ingested_at TEXT,
            model TEXT
        );
        CREATE TABLE shots (
            id INTEGER PRIMARY KEY,
            video_id INTEGER NOT NULL REFERENCES videos(id),
            idx INTEGER NOT NULL,
            start_frame INTEGER NOT NULL,
            end_frame INTEGER NOT NULL,
            start_s REAL NOT NULL,
            end_s REAL NOT NULL,
            keyframe TEXT,
            UNIQUE (video_id, idx)
        );
        CREATE TABLE concepts (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL DEFAULT 'model',
            created_at TEXT,
            info TEXT
        );
        CREATE TABLE scores (
            shot_id INTEGER NOT NULL REFERENCES shots(id),
            concept_id INTEGER NOT NULL REFERENCES concepts(id),
            score REAL NOT NULL,
            PRIMARY KEY (shot_id, concept_id)
        ) WITHOUT ROWID;
        CREATE INDEX scores_concept_score ON scores (concept_id, score DESC);
        CREATE TABLE features (
            shot_id INTEGER PRIMARY KEY REFERENCES shots(id),
            vector BLOB NOT NULL
        );
        """
    )


@migration(2)
def m002_keyframe_time_and_upgrade(db: sqlite_utils.Database) -> None:
    """Where each keyframe was taken (frame number and time, NULL for shots indexed
    before), so ``vidconcept upgrade`` can seek to it; and the staging tables an
    upgrade fills video by video before it swaps the new scores in (docs/upgrade.md)."""
    db["shots"].add_column("keyframe_frame", int)
    db["shots"].add_column("keyframe_s", float)
    # one statement at a time: executescript() would commit the migration's transaction
    for sql in (
        "CREATE TABLE upgrade_concepts (pos INTEGER PRIMARY KEY, name TEXT NOT NULL)",
        "CREATE TABLE upgrade_videos (video_id INTEGER PRIMARY KEY, shots INTEGER NOT NULL, source TEXT, done_at TEXT)",
        "CREATE TABLE upgrade_scores (shot_id INTEGER NOT NULL, pos INTEGER NOT NULL, score REAL NOT NULL, "
        "PRIMARY KEY (shot_id, pos)) WITHOUT ROWID",
        "CREATE TABLE upgrade_features (shot_id INTEGER PRIMARY KEY, vector BLOB NOT NULL)",
    ):
        db.execute(sql)


@migration(3)
def m003_feature_norms(db: sqlite_utils.Database) -> None:
    """The length of each shot's features before normalisation (NULL for shots indexed
    before): with it, an upgrade to a model version that keeps the backbone reruns only the
    layers above the features (docs/upgrade.md), without reading a frame."""
    db["features"].add_column("norm", float)
    db["upgrade_features"].add_column("norm", float)


@migration(4)
def m004_accounts_and_audit(db: sqlite_utils.Database) -> None:
    """Accounts, API tokens and sign-in sessions of a served index, and the audit trail of who
    changed what (issue 33). Passwords and token secrets are stored as hashes only
    (:mod:`.accounts`). An index made before has no accounts: it serves as before."""
    for sql in (
        "CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT NOT NULL, "
        "created_at TEXT NOT NULL, updated_at TEXT)",
        "CREATE TABLE tokens (id INTEGER PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name), "
        "digest TEXT NOT NULL UNIQUE, label TEXT, created_at TEXT NOT NULL, last_used_at TEXT)",
        "CREATE TABLE sessions (digest TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name), "
        "created_at TEXT NOT NULL, expires REAL NOT NULL)",
        "CREATE TABLE audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, user TEXT NOT NULL, action TEXT NOT NULL, "
        "target TEXT, detail TEXT)",
        "CREATE INDEX audit_target ON audit (target, id)",
    ):
        db.execute(sql)


#: Database page size of a new index (and of one migrated to schema 5 when nothing else has it
#: open): a 1280-d float16 feature row (2.6 kB) fills a 4 kB page alone (4.1 kB a shot, measured
#: with ``dbstat``); three fit in 8 kB (2.7 kB a shot).
PAGE_SIZE = 8192
#: Shots converted per committed chunk by :func:`m005_packed_scores`.
PACK_CHUNK = 20_000


@migration(5, resumable=True)
def m005_packed_scores(db: sqlite_utils.Database) -> None:
    """Scores stored once per shot (issue 34): one row per (shot, concept) made the database
    ~5 GB per million shots. Each concept gets a ``slot`` (never reused), each shot one
    ``shot_scores`` row whose blob holds float32 scores by slot (the values the old ``REAL``
    rows held, so rankings do not change). ``upgrade_scores`` (an unfinished upgrade's staged
    rows) is packed the same way by ``pos``. Converted in chunks of shots, each committed with
    the old rows it replaces deleted, so a crash resumes where it stopped; then the old tables
    are dropped and the file vacuumed once (space back to the disk)."""
    started = time.perf_counter()
    _run(db, _m005_schema)
    moved = _pack_rows(db, "scores", "shot_id", "concept_id", "shot_scores",
                       "SELECT id, slot FROM concepts")
    moved += _pack_rows(db, "upgrade_scores", "shot_id", "pos", "upgrade_shot_scores", None)
    _run(db, _m005_finish)
    if moved:
        log.info("packed %d score rows in %.1f s", moved, time.perf_counter() - started)
        vacuum(db)


def _run(db: sqlite_utils.Database, fn: Callable[[sqlite_utils.Database], None]) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        fn(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _m005_schema(db: sqlite_utils.Database) -> None:
    tables = set(db.table_names())
    if "shot_scores" in tables:
        return  # resumed
    if "slot" not in db["concepts"].columns_dict:
        db.execute("ALTER TABLE concepts ADD COLUMN slot INTEGER")
    db.execute("UPDATE concepts SET slot = (SELECT count(*) FROM concepts c WHERE c.id < concepts.id)")
    db.execute("CREATE UNIQUE INDEX concepts_slot ON concepts (slot)")
    db.execute("INSERT INTO meta (key, value) VALUES ('next_slot', (SELECT count(*) FROM concepts)) "
               "ON CONFLICT(key) DO UPDATE SET value = excluded.value")
    # Any writer (ingest, user concepts, upgrade, the web) gets a fresh slot without knowing about slots.
    db.execute("CREATE TRIGGER concepts_new_slot AFTER INSERT ON concepts WHEN NEW.slot IS NULL BEGIN "
               "UPDATE concepts SET slot = (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'next_slot') "
               "WHERE id = NEW.id; "
               "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'next_slot'; END")
    db.execute("CREATE TABLE shot_scores (shot_id INTEGER PRIMARY KEY REFERENCES shots(id), scores BLOB NOT NULL)")
    db.execute("CREATE TABLE upgrade_shot_scores (shot_id INTEGER PRIMARY KEY, scores BLOB NOT NULL)")


def _pack_rows(db: sqlite_utils.Database, old: str, key: str, col: str, new: str, slots_sql: str | None) -> int:
    """Move ``old`` (one row per key and column) into ``new`` (one float32 blob per key), a
    chunk of keys per transaction. Returns the rows moved."""
    if old not in db.table_names():
        return 0
    moved = 0
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            keys = [r[0] for r in db.execute(f"SELECT DISTINCT {key} FROM {old} ORDER BY {key} LIMIT ?",
                                             [PACK_CHUNK])]
            if not keys:
                db.execute("COMMIT")
                return moved
            lo, hi = keys[0], keys[-1]
            rows = np.asarray(db.execute(f"SELECT {key}, {col}, score FROM {old} WHERE {key} BETWEEN ? AND ?",
                                         [lo, hi]).fetchall(), np.float64).reshape(-1, 3)
            slot_of = dict(db.execute(slots_sql).fetchall()) if slots_sql else None
            _write_packed(db, new, rows, slot_of)
            db.execute(f"DELETE FROM {old} WHERE {key} BETWEEN ? AND ?", [lo, hi])
            db.execute("COMMIT")
            moved += len(rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _write_packed(db: sqlite_utils.Database, table: str, rows: np.ndarray, slot_of: dict | None) -> None:
    keys, inverse = np.unique(rows[:, 0].astype(np.int64), return_inverse=True)
    cols = rows[:, 1].astype(np.int64)
    if slot_of is not None:  # concept id → slot (rows of a deleted concept are dropped)
        lookup = np.array([slot_of.get(int(c), -1) for c in range(int(cols.max()) + 1)], np.int64)
        cols = lookup[cols]
    ok = cols >= 0
    width = int(cols[ok].max()) + 1 if ok.any() else 0
    mat = np.zeros((len(keys), width), np.float32)
    mat[inverse[ok], cols[ok]] = rows[ok, 2]
    db.conn.executemany(f"INSERT OR REPLACE INTO {table} (shot_id, scores) VALUES (?, ?)",
                        zip(keys.tolist(), (r.tobytes() for r in mat)))


def _m005_finish(db: sqlite_utils.Database) -> None:
    db.execute("DROP INDEX IF EXISTS scores_concept_score")
    for table in {"scores", "upgrade_scores"} & set(db.table_names()):  # ("scores" may be the view already)
        db.execute(f"DROP TABLE {table}")
    # For people and tools that read the old table: the same rows, unpacked by a function every
    # connection of Store registers (a plain sqlite3 shell has no such function).
    db.execute("CREATE VIEW IF NOT EXISTS scores AS SELECT p.shot_id AS shot_id, c.id AS concept_id, "
               "vc_score(p.scores, c.slot) AS score FROM shot_scores p JOIN concepts c "
               "WHERE vc_score(p.scores, c.slot) > 0")


def vacuum(db: sqlite_utils.Database) -> None:
    """Give freed pages back to the file system, at :data:`PAGE_SIZE` when no other connection has the
    index open (the page size changes only outside WAL mode); skipped when the index is busy (the
    space is reused by later writes)."""
    try:
        if db.execute("PRAGMA page_size").fetchone()[0] != PAGE_SIZE:
            with contextlib.suppress(Exception):  # another connection: keep WAL, keep the page size
                if str(db.execute("PRAGMA journal_mode = DELETE").fetchone()[0]).lower() == "delete":
                    db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        db.execute("VACUUM")
    except Exception as exc:  # noqa: BLE001 - busy readers: the space is reused by later writes
        log.warning("could not vacuum the index database (%s); freed space will be reused", exc)
    finally:
        db.execute("PRAGMA journal_mode = WAL")


def schema_version(db: sqlite_utils.Database) -> int:
    if "meta" not in db.table_names():
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(db: sqlite_utils.Database) -> int:
    """Apply pending migrations; return the schema version now in force."""
    current = schema_version(db)
    if current > LATEST:
        raise IndexError_(
            f"index schema version {current} is newer than this vidconcept understands ({LATEST}); upgrade vidconcept"
        )
    for version, name, fn in MIGRATIONS:
        if version <= current:
            continue
        log.info("migrating index schema to version %d (%s)", version, name)
        if version in RESUMABLE:
            fn(db)
        with db.atomic():
            if version not in RESUMABLE:
                fn(db)
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [str(version)],
            )
        current = version
    return current

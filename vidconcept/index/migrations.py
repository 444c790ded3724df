"""Schema migrations: the only place the index schema changes.

Each migration is a function registered with :func:`migration`, applied once, in
order, inside one transaction, and recorded in ``meta.schema_version``. An index
written by a newer vidconcept (higher version than we know) is refused rather than
guessed at.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import sqlite_utils

from ..errors import IndexError_

log = logging.getLogger(__name__)

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[int, str, Migration]] = []


def migration(version: int) -> Callable[[Migration], Migration]:
    """Register ``fn`` as the migration that brings the schema to ``version``."""

    def register(fn: Migration) -> Migration:
        if any(v == version for v, _, _ in MIGRATIONS):
            raise ValueError(f"duplicate migration version {version}")
        MIGRATIONS.append((version, fn.__name__, fn))
        MIGRATIONS.sort(key=lambda m: m[0])
        return fn

    return register


LATEST = 4


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
        with db.atomic():
            fn(db)
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [str(version)],
            )
        current = version
    return current

"""The index database: SQLite through sqlite-utils.

Tables (see :mod:`.migrations`): ``videos``, ``shots``, ``concepts`` (each with a
``slot``), ``shot_scores`` (one row per shot: its float32 scores packed by concept
slot, the source of truth the column store of :mod:`.columns` is derived from; a
``scores`` view unpacks them for ad-hoc SQL) and ``features`` (per-shot float16
vectors, the source of truth the FAISS file is rebuilt from). Every video is written
in one transaction, so a crash never leaves half a video behind. Nothing outside this
module reads the packed blobs.

Example::

    store = Store.open("vidconcept-index")
    store.counts()  # {'videos': 3, 'shots': 41, ...}
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sqlite3
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils

from ..errors import IndexError_
from ..records import Shot
from . import migrations
from .shot_match import Reshoot, match_shots

log = logging.getLogger(__name__)

DB_NAME = "index.db"
#: Scores below this are not stored; a missing score reads as 0. A softmax over
#: 1000 ImageNet classes puts almost all mass in a few classes, so this keeps the
#: table ~50x smaller at no cost to ranking.
SCORE_FLOOR = 1e-3
BUSY_TIMEOUT_MS = 30_000

#: Shots read per query when scanning every shot's scores.
SCAN_BATCH = 50_000

#: The record ingest hands to the store: :class:`vidconcept.records.Shot` (the old name, kept for callers).
ShotData = Shot


@dataclass(frozen=True)
class VideoWrite:
    """What :meth:`Store.replace_video` wrote, returned to the caller (the ingest
    updates the FAISS vectors and the column store and moves labels from it)."""

    video_id: int
    shot_ids: list[int]  # the new version's shots, in order
    reshoot: Reshoot  # which old shots kept their id, which are gone

    @property
    def removed(self) -> list[int]:
        """Old shot ids whose vectors are stale: the gone ones and the kept ones (rewritten)."""
        return sorted(self.reshoot.kept | set(self.reshoot.gone))


def _score_at(blob: bytes | None, slot: int | None) -> float:
    """SQL ``vc_score(blob, slot)``: one concept's score from a packed row (0 past its end)."""
    if blob is None or slot is None or 4 * slot + 4 > len(blob):
        return 0.0
    return struct.unpack_from("<f", blob, 4 * slot)[0]


def unpack(blobs: Sequence[bytes], width: int) -> np.ndarray:
    """Packed float32 rows → an ``(n, width)`` matrix; a shorter row (written before later
    concepts got their slots) reads as 0 there, a longer one is cut."""
    if blobs and all(len(b) == 4 * width for b in blobs):
        return np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), width).copy()
    out = np.zeros((len(blobs), width), np.float32)
    for i, b in enumerate(blobs):
        row = np.frombuffer(b, np.float32)[:width]
        out[i, : len(row)] = row
    return out


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Store:
    """SQLite side of an index folder."""

    def __init__(self, db: sqlite_utils.Database, root: Path):
        self.db, self.root = db, root

    @classmethod
    def open(cls, root: str | Path, *, create: bool = True, readonly: bool = False) -> "Store":
        root = Path(root)
        path = root / DB_NAME
        if not path.exists() and not create:
            raise IndexError_(f"{root}: no index here (run `vidconcept ingest PATH --index {root}` first)")
        try:
            root.mkdir(parents=True, exist_ok=True)
            if readonly:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            else:
                conn = sqlite3.connect(str(path), check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.create_function("vc_score", 2, _score_at, deterministic=True)
            db = sqlite_utils.Database(conn)
            if not readonly and migrations.schema_version(db) == 0:
                db.execute(f"PRAGMA page_size = {migrations.PAGE_SIZE}")  # only before the first table
            if not readonly:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                migrations.migrate(db)
            elif migrations.schema_version(db) != migrations.LATEST:
                raise IndexError_(f"{root}: index schema is out of date; open it once without --readonly")
        except (OSError, sqlite3.Error) as exc:
            raise IndexError_(f"{root}: cannot open index database: {exc}") from exc
        return cls(db, root)

    def close(self) -> None:
        self.db.close()

    def version(self) -> tuple[int, int]:
        """Changes whenever the database does: ``PRAGMA data_version`` counts other
        connections' commits, ``total_changes`` this connection's own writes."""
        return self.db.execute("PRAGMA data_version").fetchone()[0], self.db.conn.total_changes

    # ---- meta -------------------------------------------------------------
    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, json.dumps(value)],
        )

    # ---- change counter (the column store is checked against it) -----------
    def scores_generation(self) -> int:
        """Counts the committed writes that changed shots, concepts or scores: the
        column store (:mod:`.columns`) records the value it was built at."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'scores_generation'").fetchone()
        return int(row[0]) if row else 0

    def bump_generation(self) -> None:
        """Call inside every transaction that changes shots, concepts or scores."""
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('scores_generation', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")

    # ---- concepts ---------------------------------------------------------
    def ensure_concepts(self, names: Sequence[str], source: str = "model") -> dict[str, int]:
        """Insert the concepts not yet known (idempotent); return name → id for ``names``."""
        with self.db.atomic():
            before = self.db.execute("SELECT count(*) FROM concepts").fetchone()[0]
            self.db["concepts"].insert_all(
                ({"name": n, "source": source, "created_at": now_iso()} for n in names),
                ignore=True,
            )
            if self.db.execute("SELECT count(*) FROM concepts").fetchone()[0] != before:
                self.bump_generation()
        return {n: i for n, i in self.concept_ids().items() if n in set(names)}

    def concept_ids(self) -> dict[str, int]:
        return {name: cid for cid, name in self.db.execute("SELECT id, name FROM concepts ORDER BY id")}

    def concepts(self) -> list[dict]:
        return list(self.db.query("SELECT id, name, source, created_at, info FROM concepts ORDER BY id"))

    # ---- videos -----------------------------------------------------------
    def video_by_path(self, path: str) -> dict | None:
        rows = list(self.db["videos"].rows_where("path = ?", [path]))
        return rows[0] if rows else None

    def video(self, video_id: int) -> dict | None:
        rows = list(self.db["videos"].rows_where("id = ?", [video_id]))
        return rows[0] if rows else None

    def videos(self, status: str | None = None) -> Iterator[dict]:
        if status:
            return self.db["videos"].rows_where("status = ?", [status], order_by="path")
        return self.db["videos"].rows_where(order_by="path")

    def replace_video(
        self,
        video: dict,
        shots: Sequence[Shot],
        scores: np.ndarray,
        concept_ids: Sequence[int],
        features: np.ndarray,
        norms: np.ndarray | None = None,
    ) -> VideoWrite:
        """Write one video with its shots, scores and features in a single transaction.

        An earlier version of the same path (a changed file) is updated in place: the
        ``videos`` row keeps its id, and a shot whose span is unchanged (within
        :data:`~.shot_match.SPAN_TOLERANCE` frames) keeps its id (an upsert); the
        other old shots are deleted. Returns a :class:`VideoWrite`: the video and shot
        ids, and what happened to the old shots (:class:`~.shot_match.Reshoot`).
        """
        if len(shots) != len(scores) or len(shots) != len(features):
            raise ValueError("shots, scores and features must have one row per shot")
        with self.db.atomic():
            old = self.video_by_path(video["path"])
            row = {**video, "status": "indexed", "error": None, "ingested_at": now_iso()}
            if old:
                video_id = old["id"]
                self.db["videos"].update(video_id, row)
            else:
                video_id = int(self.db["videos"].insert(row).last_pk)
            shot_ids, reshoot = self._write_shots(video_id, shots)
            self._insert_scores(shot_ids, scores, concept_ids)
            self._insert_features(shot_ids, features, norms)
            self.bump_generation()
        return VideoWrite(video_id, shot_ids, reshoot)

    def _write_shots(self, video_id: int, shots: Sequence[Shot]) -> tuple[list[int], Reshoot]:
        """Upsert the shots of one video, keeping the ids of unchanged spans; old scores
        and features of the video are cleared (the caller writes the new ones)."""
        old = list(self.db.query("SELECT id, start_frame, end_frame, start_s, end_s FROM shots WHERE video_id = ?",
                                 [video_id]))
        kept = match_shots(old, shots)
        gone = {r["id"]: (r["start_s"], r["end_s"]) for r in old if r["id"] not in set(kept.values())}
        self.db.execute("DELETE FROM shot_scores WHERE shot_id IN (SELECT id FROM shots WHERE video_id = ?)",
                        [video_id])
        self.db.execute("DELETE FROM features WHERE shot_id IN (SELECT id FROM shots WHERE video_id = ?)", [video_id])
        self.db.conn.executemany("DELETE FROM shots WHERE id = ?", [(i,) for i in gone])
        # kept shots may change position: move them out of the way of UNIQUE (video_id, idx)
        self.db.execute("UPDATE shots SET idx = -id WHERE video_id = ?", [video_id])
        rows = [{"video_id": video_id, "idx": s.index, "start_frame": s.start_frame, "end_frame": s.end_frame,
                 "start_s": s.start_s, "end_s": s.end_s, "keyframe": s.keyframe, "keyframe_frame": s.keyframe_frame,
                 "keyframe_s": s.keyframe_s} for s in shots]
        if kept:
            self.db["shots"].upsert_all([{"id": kept[i], **rows[i]} for i in sorted(kept)], pk="id")
        ids = [kept[i] if i in kept else self._insert_shot(r) for i, r in enumerate(rows)]
        spans = {i: (s.start_s, s.end_s) for i, s in zip(ids, shots)}
        return ids, Reshoot(set(kept.values()), gone, spans)

    def _insert_shot(self, row: dict) -> int:
        """One new shot; a plain INSERT (a million-shot index is built through here)."""
        cur = self.db.execute(f"INSERT INTO shots ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                              list(row.values()))
        return int(cur.lastrowid)

    def _insert_scores(self, shot_ids: Sequence[int], scores: np.ndarray, concept_ids: Sequence[int]) -> None:
        """One packed row per shot (scores below :data:`SCORE_FLOOR` stored as 0)."""
        if not len(shot_ids):
            return
        slots = self.slots()
        width = max(slots.values(), default=-1) + 1
        mat = np.zeros((len(shot_ids), width), np.float32)
        mat[:, [slots[int(c)] for c in concept_ids]] = np.where(scores >= SCORE_FLOOR, scores, 0)
        self._put_rows(shot_ids, mat)

    def _put_rows(self, shot_ids: Sequence[int], mat: np.ndarray, table: str = "shot_scores") -> None:
        mat = np.ascontiguousarray(mat, np.float32)
        self.db.conn.executemany(
            f"INSERT INTO {table} (shot_id, scores) VALUES (?, ?) ON CONFLICT(shot_id) DO UPDATE SET scores = excluded.scores",
            zip(np.asarray(shot_ids, np.int64).tolist(), (r.tobytes() for r in mat)))

    def _insert_features(self, shot_ids: Sequence[int], features: np.ndarray, norms: np.ndarray | None = None) -> None:
        blobs = (np.asarray(f, dtype=np.float16).tobytes() for f in features)
        lengths = [None] * len(shot_ids) if norms is None else np.asarray(norms, float).tolist()
        self.db.conn.executemany(
            "INSERT INTO features (shot_id, vector, norm) VALUES (?, ?, ?)", zip(shot_ids, blobs, lengths)
        )

    def _delete_shots(self, video_id: int) -> list[int]:
        ids = [r[0] for r in self.db.execute("SELECT id FROM shots WHERE video_id = ?", [video_id])]
        self.db.execute("DELETE FROM shot_scores WHERE shot_id IN (SELECT id FROM shots WHERE video_id = ?)", [video_id])
        self.db.execute("DELETE FROM features WHERE shot_id IN (SELECT id FROM shots WHERE video_id = ?)", [video_id])
        self.db.execute("DELETE FROM shots WHERE video_id = ?", [video_id])
        return ids

    def mark_video(self, path: str, status: str, error: str | None = None, **fields) -> None:
        """Record a failed or missing file without touching shots already indexed for it."""
        with self.db.atomic():
            old = self.video_by_path(path)
            if old and old["status"] == "indexed" and status == "failed":
                # Keep the good index of an earlier version; remember the error.
                self.db["videos"].update(old["id"], {"error": error})
                return
            row = {"path": path, "status": status, "error": error, **fields}
            if old:
                self.db["videos"].update(old["id"], row)
            else:
                self.db["videos"].insert(row)

    def keyframe_dirs(self, path: str) -> set[str]:
        """Folders (relative to the index) holding the keyframes of a video path."""
        rows = self.db.execute(
            "SELECT DISTINCT s.keyframe FROM shots s JOIN videos v ON v.id = s.video_id WHERE v.path = ?", [path])
        return {str(Path(r[0]).parent) for r in rows if r[0]}

    def prune_missing(self) -> list[str]:
        """Delete videos whose status is ``missing`` (and their shots, scores,
        features and keyframe files); return their paths."""
        rows = list(self.db["videos"].rows_where("status = 'missing'"))
        keyframes: list[str] = []
        with self.db.atomic():
            for row in rows:
                keyframes += [r[0] for r in self.db.execute("SELECT keyframe FROM shots WHERE video_id = ?", [row["id"]]) if r[0]]
                self._delete_shots(row["id"])
                self.db["videos"].delete(row["id"])
            if rows:
                self.bump_generation()
        for rel in keyframes:
            (self.root / rel).unlink(missing_ok=True)
        for folder in {(self.root / rel).parent for rel in keyframes}:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
        return [r["path"] for r in rows]

    def touch_video(self, video_id: int, **fields) -> None:
        self.db["videos"].update(video_id, fields)

    # ---- shots and scores -------------------------------------------------
    def shot_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM shots").fetchone()[0]

    def max_shot_id(self) -> int:
        return self.db.execute("SELECT coalesce(max(id), 0) FROM shots").fetchone()[0]

    def shot_ids(self) -> np.ndarray:
        return np.fromiter((r[0] for r in self.db.execute("SELECT id FROM shots")), dtype=np.int64)

    def shot_ids_of(self, video_id: int) -> np.ndarray:
        return np.fromiter((r[0] for r in self.db.execute("SELECT id FROM shots WHERE video_id = ?", [video_id])),
                           dtype=np.int64)

    def ordered_shot_ids(self, video_id: int | None = None) -> list[int]:
        """Shot ids in viewing order: one video's by shot index, or all by video path then shot index."""
        if video_id is not None:
            rows = self.db.execute("SELECT id FROM shots WHERE video_id = ? ORDER BY idx", [video_id])
        else:
            rows = self.db.execute(
                "SELECT s.id FROM shots s JOIN videos v ON v.id = s.video_id ORDER BY v.path, s.idx")
        return [r[0] for r in rows]

    # ---- packed scores (one float32 row per shot, by concept slot) ---------
    def slots(self) -> dict[int, int]:
        """Concept id → slot: the position of its score in every packed row."""
        return dict(self._concept_slots()[0])

    def _concept_slots(self) -> tuple[dict[int, int], dict[int, str]]:
        """``(id → slot, slot → name)``, read again only when the database changed (a search reads
        them for every hit)."""
        version = self.version()
        cached = getattr(self, "_slot_cache", None)
        if cached is None or cached[0] != version:
            rows = self.db.execute("SELECT id, slot, name FROM concepts").fetchall()
            cached = self._slot_cache = (version, {i: s for i, s, _ in rows}, {s: n for _, s, n in rows})
        return cached[1], cached[2]

    def scan_scores(self, batch: int = SCAN_BATCH) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every shot's packed scores as ``(ids, float32 matrix by slot)`` chunks, in id order
        (shots without scores are left out)."""
        width = self.db.execute("SELECT coalesce(max(slot), -1) + 1 FROM concepts").fetchone()[0]
        last = -1
        while True:
            rows = self.db.execute("SELECT shot_id, scores FROM shot_scores WHERE shot_id > ? ORDER BY shot_id LIMIT ?",
                                   [last, batch]).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            yield ids, unpack([r[1] for r in rows], width)
            last = int(ids[-1])

    def scores_of(self, shot_ids: Sequence[int] | np.ndarray, concept_ids: Sequence[int]) -> np.ndarray:
        """``(len(shot_ids), len(concept_ids))`` float32 scores (0 where none is stored), in the
        order given: the exact scores a ranking needs for a few hundred shots."""
        ids = np.asarray(shot_ids, np.int64)
        out = np.zeros((len(ids), len(concept_ids)), np.float32)
        if not len(ids) or not len(concept_ids):
            return out
        slot_of = self.slots()
        cols = np.array([slot_of.get(int(c), -1) for c in concept_ids], np.int64)
        uniq = np.unique(ids)
        found: dict[int, bytes] = {}
        for lo in range(0, len(uniq), 20_000):
            chunk = json.dumps(uniq[lo : lo + 20_000].tolist())
            found.update(self.db.execute(
                "SELECT shot_id, scores FROM shot_scores WHERE shot_id IN (SELECT value FROM json_each(?))",
                [chunk]).fetchall())
        if not found:
            return out
        keys = np.fromiter(found, np.int64, len(found))
        mat = unpack(list(found.values()), max(int(cols.max()) + 1, 1))
        order = np.argsort(keys)
        rows = order[np.minimum(np.searchsorted(keys[order], ids), len(keys) - 1)]
        hit = keys[rows] == ids
        ok = cols >= 0
        out[np.ix_(hit, ok)] = mat[np.ix_(rows[hit], cols[ok])]
        return out

    def concept_column(self, concept_id: int) -> tuple[np.ndarray, np.ndarray]:
        """All stored ``(shot_ids, scores)`` of one concept (scores > 0, in id order)."""
        slot = self.slots().get(concept_id)
        ids, vals = [np.empty(0, np.int64)], [np.empty(0, np.float32)]
        if slot is not None:
            for chunk_ids, mat in self.scan_scores():
                col = mat[:, slot]
                keep = col > 0
                ids.append(chunk_ids[keep])
                vals.append(col[keep])
        return np.concatenate(ids), np.concatenate(vals)

    def top_by_concept(self, concept_id: int, limit: int, offset: int = 0, min_score: float = 0.0) -> list[tuple[int, float]]:
        """Shots ranked by one concept's score (ties by shot id): a scan of the packed rows."""
        ids, scores = self.concept_column(concept_id)
        keep = scores >= min_score
        ids, scores = ids[keep], scores[keep]
        order = np.lexsort((ids, -scores))[offset : offset + limit]
        return [(int(ids[i]), float(scores[i])) for i in order]

    def count_by_concept(self, concept_id: int, min_score: float) -> int:
        return int(np.count_nonzero(self.concept_column(concept_id)[1] >= max(min_score, 1e-12)))

    def concept_counts(self, min_score: float) -> dict[int, int]:
        """Concept id → shots scoring at least ``min_score`` (and above 0), in one scan."""
        slot_of = self.slots()
        counts = np.zeros(max(slot_of.values(), default=-1) + 1, np.int64)
        for _, mat in self.scan_scores():
            counts[: mat.shape[1]] += np.count_nonzero(mat >= max(min_score, 1e-12), axis=0)
        return {cid: int(counts[slot]) for cid, slot in slot_of.items()}

    def shots(self, shot_ids: Sequence[int]) -> dict[int, dict]:
        """Shot rows joined with their video's path and rate, keyed by shot id."""
        out: dict[int, dict] = {}
        ids = list(shot_ids)
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(
                "SELECT s.id AS shot_id, s.video_id, v.path AS video, v.fps, s.idx AS shot_index, s.start_frame, "
                f"s.end_frame, s.start_s, s.end_s, s.keyframe FROM shots s JOIN videos v ON v.id = s.video_id WHERE s.id IN ({marks})",
                chunk,
            ):
                out[row["shot_id"]] = row
        return out

    def shot_scores(self, shot_id: int) -> dict[str, float]:
        """Concept name → stored score (> 0) of one shot, best first."""
        names = self._concept_slots()[1]
        row = self.db.execute("SELECT scores FROM shot_scores WHERE shot_id = ?", [shot_id]).fetchone()
        if row is None:
            return {}
        vec = np.frombuffer(row[0], np.float32)
        at = np.flatnonzero(vec > 0)
        at = at[np.argsort(-vec[at], kind="stable")]  # best first; equal scores keep slot order
        return {names[i]: v for i, v in zip(at.tolist(), vec[at].tolist()) if i in names}

    def top_concepts(self, shot_id: int, k: int) -> dict[str, float]:
        return {name: round(score, 4) for name, score in list(self.shot_scores(shot_id).items())[:k]}

    def feature(self, shot_id: int) -> np.ndarray | None:
        row = self.db.execute("SELECT vector FROM features WHERE shot_id = ?", [shot_id]).fetchone()
        return np.frombuffer(row[0], dtype=np.float16).astype(np.float32) if row else None

    def iter_features(self, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All stored feature vectors as ``(ids, float32 matrix)`` chunks, in id order."""
        for ids, mat in self.scan_features(batch):
            yield ids, mat.astype(np.float32)

    def shot_digest(self) -> dict:
        """Cheap fingerprint of the shot table the column store is checked against."""
        count, total, top = self.db.execute(
            "SELECT count(*), coalesce(sum(id), 0), coalesce(max(id), 0) FROM shots").fetchone()
        return {"count": count, "sum": total, "max": top}

    def feature_digest(self) -> dict:
        """Cheap fingerprint of the feature table the FAISS file is checked against."""
        count, total, top = self.db.execute(
            "SELECT count(*), coalesce(sum(shot_id), 0), coalesce(max(shot_id), 0) FROM features"
        ).fetchone()
        return {"count": count, "sum": total, "max": top}

    def counts(self) -> dict[str, int]:
        q = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "videos": q("SELECT count(*) FROM videos WHERE status = 'indexed'"),
            "failed": q("SELECT count(*) FROM videos WHERE status = 'failed'"),
            "missing": q("SELECT count(*) FROM videos WHERE status = 'missing'"),
            "shots": q("SELECT count(*) FROM shots"),
            "concepts": q("SELECT count(*) FROM concepts"),
            "video_seconds": round(q("SELECT coalesce(sum(duration_s), 0) FROM videos WHERE status = 'indexed'"), 3),
        }

    # ---- user concepts (issue 10) -----------------------------------------
    def features_of(self, shot_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, float32 matrix)`` of the given shots that have features, in id order."""
        rows: list = []
        ids = sorted({int(i) for i in shot_ids})
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            marks = ",".join("?" * len(chunk))
            rows += self.db.execute(f"SELECT shot_id, vector FROM features WHERE shot_id IN ({marks})", chunk).fetchall()
        if not rows:
            return np.empty(0, np.int64), np.empty((0, self.get_meta("feature_dim", 0) or 0), np.float32)
        rows.sort()
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16).reshape(len(rows), -1)
        return np.array([r[0] for r in rows], np.int64), mat.astype(np.float32)

    def video_features(self, video_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(shot ids, float16 unit features, float32 norms)`` of one video's shots in ``idx``
        order; ``None`` unless every shot has features with a recorded norm."""
        rows = self.db.execute("SELECT s.id, f.vector, f.norm FROM shots s LEFT JOIN features f ON f.shot_id = s.id "
                               "WHERE s.video_id = ? ORDER BY s.idx", [video_id]).fetchall()
        if not rows or any(vector is None or norm is None for _, vector, norm in rows):
            return None
        return (np.array([r[0] for r in rows], np.int64), np.stack([np.frombuffer(r[1], np.float16) for r in rows]),
                np.array([r[2] for r in rows], np.float32))

    def scan_features(self, batch: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All feature vectors as stored, ``(ids, float16 matrix)`` chunks in id order.

        Unlike :meth:`iter_features` nothing is converted: a caller that scores every
        shot converts each chunk into one reused float32 buffer (no page faults per chunk).
        """
        last = 0
        while True:
            rows = self.db.execute(
                "SELECT shot_id, vector FROM features WHERE shot_id > ? ORDER BY shot_id LIMIT ?", [last, batch]
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16).reshape(len(rows), -1)
            last = int(ids[-1])

    def write_concept(self, name: str, source: str, created_at: str, info: str, shot_ids: np.ndarray,
                      scores: np.ndarray) -> int:
        """Create or update concept ``name`` and replace all its scores, in one transaction; return its id."""
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO concepts (name, source, created_at, info) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET source = excluded.source, info = excluded.info",
                [name, source, created_at, info])
            cid = self.db.execute("SELECT id FROM concepts WHERE name = ?", [name]).fetchone()[0]
            self.replace_concept_scores(cid, shot_ids, scores)
        return cid

    def replace_concept_scores(self, concept_id: int, shot_ids: np.ndarray, scores: np.ndarray) -> None:
        """All scores of one concept: its slot of every packed row rewritten (scores below
        :data:`SCORE_FLOOR`, and shots not given, read 0)."""
        slot = self.slots()[concept_id]
        given = np.asarray(shot_ids, np.int64)
        values = np.where(np.asarray(scores, np.float32) >= SCORE_FLOOR, np.asarray(scores, np.float32), 0)
        order = np.argsort(given)
        given, values = given[order], values[order]
        with self.db.atomic():
            seen = np.zeros(len(given), bool)
            for ids, mat in self.scan_scores():  # each chunk is read anew after the last one's writes
                if mat.shape[1] <= slot:
                    mat = np.pad(mat, ((0, 0), (0, slot + 1 - mat.shape[1])))
                pos = np.minimum(np.searchsorted(given, ids), max(len(given) - 1, 0))
                hit = given[pos] == ids if len(given) else np.zeros(len(ids), bool)
                new = np.zeros(len(ids), np.float32)
                new[hit] = values[pos[hit]]
                seen[pos[hit]] = True
                if not np.array_equal(mat[:, slot], new):
                    mat[:, slot] = new
                    self._put_rows(ids, mat)
            rest = np.flatnonzero(~seen & (values > 0))  # shots that had no packed row yet
            if len(rest):
                mat = np.zeros((len(rest), slot + 1), np.float32)
                mat[:, slot] = values[rest]
                self._put_rows(given[rest], mat)
            self.bump_generation()

    # ---- an upgrade's staged scores (by the new model's concept positions) ---
    def stage_upgrade_scores(self, shot_ids: Sequence[int], scores: np.ndarray) -> None:
        """Packed rows of an upgrade's new scores, by model position (see :mod:`vidconcept.upgrade`)."""
        scores = np.asarray(scores, np.float32)
        self._put_rows(shot_ids, np.where(scores >= SCORE_FLOOR, scores, 0), table="upgrade_shot_scores")

    def swap_in_upgrade_scores(self) -> None:
        """Inside the upgrade's swap transaction: every shot's scores replaced by its staged ones,
        positions mapped to the slots of the concepts named in ``upgrade_concepts`` (others 0)."""
        self.db.execute("DELETE FROM shot_scores")
        slot_of = dict(self.db.execute("SELECT uc.pos, c.slot FROM upgrade_concepts uc "
                                       "JOIN concepts c ON c.name = uc.name").fetchall())
        if not slot_of:
            return
        pos = np.fromiter(slot_of, np.int64, len(slot_of))
        slots = np.array([slot_of[p] for p in pos.tolist()], np.int64)
        width = self.db.execute("SELECT coalesce(max(slot), -1) + 1 FROM concepts").fetchone()[0]
        last = -1
        while True:
            rows = self.db.execute("SELECT shot_id, scores FROM upgrade_shot_scores WHERE shot_id > ? "
                                   "ORDER BY shot_id LIMIT ?", [last, SCAN_BATCH]).fetchall()
            if not rows:
                return
            staged = unpack([r[1] for r in rows], int(pos.max()) + 1)
            mat = np.zeros((len(rows), width), np.float32)
            mat[:, slots] = staged[:, pos]
            self._put_rows([r[0] for r in rows], mat)
            last = rows[-1][0]

    def find_concept(self, name: str) -> dict | None:
        """The concept named ``name``, else one whose name matches case-insensitively (as queries resolve)."""
        rows = list(self.db.query(
            "SELECT id, name, source, created_at, info FROM concepts WHERE lower(name) = lower(?) "
            "ORDER BY name = ? DESC, id", [name, name]))
        return rows[0] if rows else None

    def delete_concept(self, concept_id: int) -> None:
        """A concept and its scores: its slot is never given again, so what the packed rows
        still hold there is never read (rows are rewritten shorter as shots are re-ingested)."""
        with self.db.atomic():
            self.db.execute("DELETE FROM concepts WHERE id = ?", [concept_id])
            self.bump_generation()

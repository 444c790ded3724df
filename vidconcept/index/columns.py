"""Per-shot concept scores as memory-mapped 8-bit columns beside SQLite (issues 23, 34).

SQLite's ``shot_scores`` (one packed float32 row per shot) is the source of truth.
Ranking a million shots there would read every row, so the column store keeps one
file per concept, in shot-id order:

* ``<cid>.<tag>.u8``: an 8-bit *code* per shot, read in full by a query. Code 0
  means exactly 0 (no stored score), 255 exactly 1, and code ``k`` in 1..254 a
  score in ``[(k-1)/254, k/254)``: a resolution of 1/254 ≈ 0.0039.
* the exact float32 score is read from SQLite (:meth:`Store.scores_of`) only for the
  few shots the codes cannot order (see :mod:`vidconcept.search.rank`), so rankings and
  totals are identical to ranking the stored scores while a query touches 1 byte per
  shot and the scores are on disk once (4 bytes in SQLite, 1 byte here, per concept).

``ids.<tag>.i8`` maps row → shot id. ``manifest.json`` names the files and the
``scores_generation`` of the database they were built at (a counter every write
of shots, concepts or scores bumps in its transaction) plus a digest of the shot
table. An ingest does not wait until it ends to publish: every few thousand shots
(or seconds) it appends a *segment* (``seg-ids``, ``seg-dead``, ``seg-codes``: the
shots it wrote, the ids it removed or rewrote, and their codes) and replaces the
manifest; at its end the segments are merged into new main columns. A reader sees
main columns minus the ids later segments remove, plus the segments' shots.

A store whose generation differs from the database is *stale*. While a writer runs,
a reader answers from the last published store (its shots lag by at most one
segment; a shot rewritten since reads its newest exact score); with no writer, a
stale store (a crash) is rebuilt from SQLite before answering, or in the background
while queries go through SQLite. Files are never changed in place: new ones get a new
tag, the manifest is replaced atomically, and files no manifest names are deleted
afterwards (a reader's open memory maps stay valid). So a reader sees either the old
or the new store, never a mix, and after a ``kill -9`` the store is at worst stale.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .store import SCORE_FLOOR, Store

log = logging.getLogger(__name__)

FOLDER = "columns"
MANIFEST = "manifest.json"
FORMAT = 2
#: An ingest publishes a segment after this many shots …
SEGMENT_SHOTS = 20_000
#: … or this many seconds after its first unpublished write, whichever comes first.
SEGMENT_SECONDS = 10.0
#: More segments than this are merged into the main columns mid-ingest.
MAX_SEGMENTS = 16
#: Codes 1..254 split (0, 1) into 254 equal bins.
LEVELS = 254
_K = np.arange(256, dtype=np.float64)
#: Bounds of the exact score of a shot with code ``k`` (closed: they also hold
#: after ``min``, ``max`` and ``1 - x``, which map codes to codes).
LOWER = np.r_[0.0, (_K[1:255] - 1) / LEVELS, 1.0]
UPPER = np.r_[0.0, _K[1:255] / LEVELS, 1.0]
#: The value a code stands for in weighted sums (bin centre; 0 and 1 exact).
DECODE = np.r_[0.0, (_K[1:255] - 0.5) / LEVELS, 1.0].astype(np.float32)
#: Largest error of :data:`DECODE` (plus float32 rounding).
MARGIN = 0.5 / LEVELS + 1e-6


def encode(scores: np.ndarray) -> np.ndarray:
    """float scores in [0, 1] → uint8 codes (monotone: a higher score never gets a lower code)."""
    s = np.asarray(scores, np.float64)
    codes = np.clip(np.floor(s * LEVELS) + 1, 1, LEVELS)
    codes[s <= 0] = 0
    codes[s >= 1] = 255
    return codes.astype(np.uint8)


class StaleColumns(Exception):
    """A column file vanished under a reader (a writer replaced the store): read the manifest again."""


@dataclass
class Segment:
    """Shots an ingest published before merging: their ids, the ids they remove, their codes."""

    ids: np.ndarray  # int64
    dead: np.ndarray  # int64: shot ids removed or rewritten by this segment's writes
    concepts: list[int]  # concept ids, the rows of ``codes``
    codes: np.ndarray  # uint8 (len(concepts), len(ids))
    names: tuple[str, str, str]

    def column(self, concept_id: int) -> np.ndarray:
        if concept_id in self.concepts:
            return self.codes[self.concepts.index(concept_id)]
        return np.zeros(len(self.ids), np.uint8)


@dataclass
class ColumnStore:
    """One consistent version of the column store (what one manifest names): main columns
    plus segments, seen as one set of rows sorted by shot id."""

    folder: Path
    generation: int
    main_ids: np.ndarray  # int64, ascending: main row → shot id
    files: dict[int, str]  # concept id → main codes file
    digest: dict
    hists: dict[int, np.ndarray] = field(default_factory=dict)  # main: concept id → shots per code (256)
    segments: list[Segment] = field(default_factory=list)
    source: Store | None = None  # where exact scores are read (set by the reader)
    _codes: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _maps: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _view: tuple | None = field(default=None, repr=False)
    _seg_hists: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def has(self, concept_id: int) -> bool:
        return concept_id in self.files or any(concept_id in s.concepts for s in self.segments)

    @property
    def ids(self) -> np.ndarray:
        """Row → shot id over main and segments, ascending."""
        return self._rows()[0]

    def _rows(self) -> tuple:
        """``(ids, keep_main, keep_per_segment, order)``: the live rows of each part and the
        permutation sorting their concatenation by id (``None`` when already sorted)."""
        if self._view is None:
            if not self.segments:
                self._view = (self.main_ids, None, [], None)
            else:
                keep_main = ~np.isin(self.main_ids, np.concatenate([np.r_[s.dead, s.ids] for s in self.segments]))
                keeps = []
                for i, seg in enumerate(self.segments):
                    later = [np.r_[s.dead, s.ids] for s in self.segments[i + 1:]]
                    keeps.append(~np.isin(seg.ids, np.concatenate(later)) if later else np.ones(len(seg.ids), bool))
                ids = np.concatenate([self.main_ids[keep_main]] + [s.ids[k] for s, k in zip(self.segments, keeps)])
                order = None if np.all(ids[1:] > ids[:-1]) else np.argsort(ids, kind="stable")
                self._view = (ids if order is None else ids[order], keep_main, keeps, order)
        return self._view

    def codes(self, concept_id: int) -> np.ndarray:
        """The uint8 codes of one concept over all rows (memory-mapped when there are no segments)."""
        col = self._codes.get(concept_id)
        if col is None:
            main = self._main(concept_id)
            _, keep_main, keeps, order = self._rows()
            if self.segments:
                col = np.concatenate([main[keep_main]] + [s.column(concept_id)[k] for s, k in zip(self.segments, keeps)])
                col = col if order is None else col[order]
            else:
                col = main
            self._codes[concept_id] = col
        return col

    def _main(self, concept_id: int) -> np.ndarray:
        mapped = self._maps.get(concept_id)
        if mapped is not None:
            return mapped
        name = self.files.get(concept_id)
        if name is None or not len(self.main_ids):
            return np.zeros(len(self.main_ids), np.uint8)
        try:
            mapped = self._maps[concept_id] = np.memmap(self.folder / name, dtype=np.uint8, mode="r",
                                                        shape=(len(self.main_ids),))
            return mapped
        except FileNotFoundError as exc:
            raise StaleColumns(str(exc)) from exc

    def map_all(self) -> None:
        """Map every main column now: a writer may delete the files once it publishes a newer store,
        and a mapped file stays readable (so a reader of this version never finds one gone)."""
        for cid in self.files:
            self._main(cid)

    def exact_rows(self, rows: np.ndarray, concept_ids: list[int]) -> dict[int, np.ndarray]:
        """Exact float32 scores of some rows for several concepts, in one read of SQLite."""
        if self.source is None:
            raise StaleColumns("no database to read exact scores from")
        mat = self.source.scores_of(self.ids[np.asarray(rows, np.int64)], concept_ids)
        return {cid: mat[:, j] for j, cid in enumerate(concept_ids)}

    def exact_at(self, concept_id: int, rows: np.ndarray) -> np.ndarray:
        return self.exact_rows(rows, [concept_id])[concept_id]

    def exact(self, concept_id: int) -> np.ndarray:
        """One concept's exact scores over all rows (a scan of SQLite: tests and tools)."""
        if self.source is None:
            raise StaleColumns("no database to read exact scores from")
        return scatter(self.ids, *self.source.concept_column(concept_id))

    def positions(self, shot_ids: np.ndarray) -> np.ndarray:
        """Rows of the given shot ids, ascending (ids the store does not hold are left out)."""
        ids = self.ids
        want = np.unique(np.asarray(shot_ids, np.int64))
        pos = np.searchsorted(ids, want)
        pos = pos[pos < len(ids)]
        return pos[ids[pos] == want[: len(pos)]] if len(pos) else pos

    def histogram(self, concept_id: int) -> np.ndarray:
        """Shots per code of one concept (the main columns' are in the manifest: no scan)."""
        if self.segments:
            hist = self._seg_hists.get(concept_id)
            if hist is None:
                hist = self._seg_hists[concept_id] = np.bincount(self.codes(concept_id), minlength=256)
            return hist
        hist = self.hists.get(concept_id)
        if hist is None:
            hist = self.hists[concept_id] = np.bincount(self.codes(concept_id), minlength=256)
        return hist

    def count(self, concept_id: int, floor: float) -> int:
        """Shots whose score is ``>= floor`` (``floor > 0``): from the histogram, exact scores
        only for the one or two codes that straddle ``floor``."""
        hist = self.histogram(concept_id)
        sure, maybe = code_bounds(floor, 2.0**-24)  # a stored score is >= 0.001
        # One concept's bins are half-open ([(k-1)/254, k/254)), so a floor on a bin
        # edge (0.5 is 127/254) leaves nothing for the exact scores to decide.
        maybe = min(max(maybe, int(np.searchsorted(UPPER[:255], floor, "right"))), sure)
        total = int(hist[sure:].sum())
        if maybe < sure and hist[maybe:sure].any():
            codes = self.codes(concept_id)
            pos = np.flatnonzero((codes >= maybe) & (codes < sure))
            total += int(np.count_nonzero(self.exact_at(concept_id, pos) >= floor))
        return total


def code_bounds(floor: float, tiny: float = 0.0) -> tuple[int, int]:
    """``(sure, maybe)``: shots with code ``>= sure`` score at least ``floor``; below
    ``maybe`` they score less; in between only the exact score tells. A ``floor`` at
    or below ``tiny`` (the least positive score a query can make) means ``> 0``: code >= 1."""
    if floor <= tiny:
        return 1, 1
    return int(np.searchsorted(LOWER, floor, "left")), int(np.searchsorted(UPPER, floor, "left"))


# ---- reading and writing ------------------------------------------------------------------------
def folder_of(root: Path) -> Path:
    return Path(root) / FOLDER


def read(root: Path, generation: int | None = None) -> ColumnStore | None:
    """The store the manifest names, every file checked for size; None when missing, unreadable,
    or (cheaply, before loading anything else) not at ``generation`` when one is given."""
    for _ in range(3):  # a writer may replace the manifest and delete its files meanwhile
        try:
            return _read(root, generation)
        except _Replaced:
            continue
    return None


class _Replaced(Exception):
    pass


def _read(root: Path, generation: int | None) -> ColumnStore | None:
    folder = folder_of(root)
    try:
        text = (folder / MANIFEST).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("%s: column store manifest is unreadable (%s); rebuilding", folder, exc)
        return None
    try:
        meta = json.loads(text)
        if meta.get("format") != FORMAT or (generation is not None and meta["generation"] != generation):
            return None
        n = int(meta["n"])
        ids = np.fromfile(folder / meta["ids"], dtype=np.int64)
        files = {int(cid): name for cid, name in meta["concepts"].items()}
        if len(ids) != n or any((folder / name).stat().st_size != n for name in files.values()):
            log.warning("%s: column store files do not match their manifest; rebuilding", folder)
            return None
        hist = np.fromfile(folder / meta["hists"], dtype=np.int64).reshape(len(files), 256)
        segments = [_read_segment(folder, s) for s in meta.get("segments", [])]
        cs = ColumnStore(folder, int(meta["generation"]), ids, files, meta["digest"], dict(zip(files, hist)), segments)
        cs.map_all()
        return cs
    except (FileNotFoundError, StaleColumns):
        with contextlib.suppress(OSError):
            if (folder / MANIFEST).read_text() != text:
                raise _Replaced from None
        log.warning("%s: a column store file is missing; rebuilding", folder)
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: column store is unreadable (%s); rebuilding", folder, exc)
        return None


def _read_segment(folder: Path, meta: dict) -> Segment:
    ids = np.fromfile(folder / meta["ids"], np.int64)
    dead = np.fromfile(folder / meta["dead"], np.int64)
    concepts = [int(c) for c in meta["concepts"]]
    codes = np.fromfile(folder / meta["codes"], np.uint8)
    if len(ids) != meta["n"] or len(dead) != meta["n_dead"] or len(codes) != len(ids) * len(concepts):
        raise ValueError("a segment does not match its manifest")
    return Segment(ids, dead, concepts, codes.reshape(len(concepts), len(ids)),
                   (meta["ids"], meta["dead"], meta["codes"]))


class Writer:
    """Writes a new version of the store: column files first, then the manifest."""

    def __init__(self, root: Path, generation: int, ids: np.ndarray, digest: dict):
        self.folder = folder_of(root)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.generation, self.digest = generation, digest
        self.ids = np.ascontiguousarray(ids, np.int64)
        self.tag = f"{generation}-{secrets.token_hex(4)}"
        self.files: dict[int, str] = {}
        self.hists: dict[int, list[int]] = {}
        self.segments: list[dict] = []
        self.ids_name = f"ids.{self.tag}.i8"
        self.ids.tofile(self.folder / self.ids_name)

    def add(self, concept_id: int, scores: np.ndarray) -> None:
        """One concept's scores over :attr:`ids` (float, 0 where not stored)."""
        scores = np.asarray(scores, np.float32)
        if scores.shape != self.ids.shape:
            raise ValueError(f"concept {concept_id}: {scores.shape} scores for {len(self.ids)} shots")
        self.add_codes(concept_id, encode(scores))

    def add_codes(self, concept_id: int, codes: np.ndarray) -> None:
        name = f"{concept_id}.{self.tag}.u8"
        np.ascontiguousarray(codes, np.uint8).tofile(self.folder / name)
        self.files[concept_id] = name
        self.hists[concept_id] = np.bincount(codes, minlength=256).tolist()

    def keep(self, old: ColumnStore, concept_id: int) -> None:
        """Reuse an unchanged main column of ``old`` (same rows, no segments)."""
        self.files[concept_id] = old.files[concept_id]
        self.hists[concept_id] = old.histogram(concept_id).tolist()

    def manifest(self) -> dict:
        hists = f"hists.{self.tag}.i8"
        np.asarray([self.hists[c] for c in self.files], np.int64).reshape(len(self.files), 256).tofile(
            self.folder / hists)
        return {"format": FORMAT, "generation": self.generation, "n": len(self.ids), "ids": self.ids_name,
                "digest": self.digest, "concepts": {str(c): f for c, f in self.files.items()}, "hists": hists,
                "segments": self.segments}

    def commit(self, root: Path, source: Store | None = None) -> ColumnStore:
        """Publish this version unless a newer one is there already; return the published store."""
        publish(self.folder, self.manifest())
        published = read(root)
        if published is None:
            published = ColumnStore(self.folder, self.generation, self.ids, dict(self.files), self.digest,
                                    {c: np.asarray(h) for c, h in self.hists.items()})
        published.source = source
        return published


def publish(folder: Path, manifest: dict) -> None:
    """Replace the manifest atomically (unless the one there is newer) and delete what no manifest names."""
    with _manifest_lock(folder):
        current = read(folder.parent)
        # The same generation is the same database state: keep the one already there (if readable).
        if current is None or current.generation < manifest["generation"]:
            tmp = folder / f"{MANIFEST}.{secrets.token_hex(4)}.tmp"
            tmp.write_text(json.dumps(manifest))
            os.replace(tmp, folder / MANIFEST)
        _collect_garbage(folder)


def _peek_generation(folder: Path) -> int | None:
    try:
        meta = json.loads((folder / MANIFEST).read_text())
        return int(meta["generation"]) if meta.get("format") == FORMAT else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def _manifest_lock(folder: Path) -> Iterator[None]:
    with open(folder / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _collect_garbage(folder: Path) -> None:
    """Delete data files that no manifest names and that are not newer than it (a
    concurrent writer of a newer version may be writing those)."""
    try:
        meta = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return
    keep = {meta["ids"], meta["hists"], *meta["concepts"].values(),
            *(n for s in meta.get("segments", []) for n in (s["ids"], s["dead"], s["codes"]))}
    for path in folder.iterdir():
        if path.name in keep or path.name.startswith((MANIFEST, ".")):
            continue
        try:
            generation = int(path.name.split(".")[-2].split("-")[0])
        except (ValueError, IndexError):
            continue
        if generation <= int(meta["generation"]):
            path.unlink(missing_ok=True)


# ---- building from SQLite, and keeping it current ---------------------------------------------------
def build(store: Store) -> ColumnStore:
    """A new store from the database, read in one transaction (a consistent snapshot), and published.
    Streams the packed rows once; memory stays at one chunk of rows."""
    db = store.db
    began = not db.conn.in_transaction
    if began:
        db.execute("BEGIN")
    try:
        generation, digest = store.scores_generation(), store.shot_digest()
        ids = np.fromiter((r[0] for r in db.execute("SELECT id FROM shots ORDER BY id")), np.int64)
        slots = store.slots()
        writer = Writer(store.root, generation, ids, digest)
        names = {cid: f"{cid}.{writer.tag}.u8" for cid in slots}
        hists = {cid: np.zeros(256, np.int64) for cid in slots}
        handles = {cid: open(writer.folder / name, "wb") for cid, name in names.items()}
        try:
            done = 0
            for chunk_ids, mat in store.scan_scores():
                # shots without a packed row (none today) read as 0: spread the chunk over its id range
                end = int(np.searchsorted(ids, chunk_ids[-1], "right"))
                dense = np.zeros((end - done, mat.shape[1]), np.float32)
                pos = np.minimum(np.searchsorted(ids[done:end], chunk_ids), max(end - done - 1, 0))
                ok = ids[done:end][pos] == chunk_ids if end > done else np.zeros(len(chunk_ids), bool)
                dense[pos[ok]] = mat[ok]
                for cid, slot in slots.items():
                    codes = encode(dense[:, slot]) if slot < dense.shape[1] else np.zeros(len(dense), np.uint8)
                    handles[cid].write(codes.tobytes())
                    hists[cid] += np.bincount(codes, minlength=256)
                done = end
            for cid in slots:
                handles[cid].write(bytes(len(ids) - done))
                hists[cid][0] += len(ids) - done
        finally:
            for fh in handles.values():
                fh.close()
        writer.files, writer.hists = names, {cid: h.tolist() for cid, h in hists.items()}
    finally:
        if began:
            db.execute("ROLLBACK")
    log.info("column store built: %d shots x %d concepts (generation %d)", len(ids), len(writer.files), generation)
    return writer.commit(store.root, store)


def scatter(ids: np.ndarray, shot_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """A dense float32 column over ``ids`` (ascending) from sparse ``(shot_ids, scores)``; 0 elsewhere."""
    col = np.zeros(len(ids), np.float32)
    shot_ids = np.asarray(shot_ids, np.int64)
    if not len(ids) or not len(shot_ids):
        return col
    pos = np.minimum(np.searchsorted(ids, shot_ids), len(ids) - 1)
    ok = ids[pos] == shot_ids
    col[pos[ok]] = np.asarray(scores, np.float32)[ok]
    return col


def fresh(store: Store, cs: ColumnStore | None, generation: int | None = None) -> bool:
    """Whether ``cs`` holds what the database holds now."""
    if cs is None:
        return False
    generation = store.scores_generation() if generation is None else generation
    return cs.generation == generation


def open_columns(store: Store, *, rebuild: bool = False) -> ColumnStore:
    """The current store, rebuilt when missing, corrupt or stale (as :func:`~.vectors.open_vectors`).
    Writers call it under the write lock; a reader calls it only when no writer runs."""
    cs = None if rebuild else read(store.root)
    if cs is not None and fresh(store, cs) and cs.digest == store.shot_digest():
        cs.source = store
        return cs
    if cs is not None:
        log.warning("%s: column store is stale (generation %d); rebuilding it from the database",
                    folder_of(store.root), cs.generation)
    return build(store)


def replace_concept(store: Store, before: int, concept_id: int, shot_ids: np.ndarray, scores: np.ndarray) -> None:
    """After a transaction (generation ``before`` → now) that replaced one concept's scores:
    write that column only, when the store was current before it; else rebuild."""

    def column(cs: ColumnStore) -> np.ndarray:
        col = scatter(cs.ids, shot_ids, scores)
        col[col < SCORE_FLOOR] = 0.0  # as SQLite stores them
        return col
    _rewrite_one(store, before, concept_id, column)


def drop_concept(store: Store, before: int, concept_id: int) -> None:
    """After a transaction that deleted one concept: the same store without its column."""
    _rewrite_one(store, before, concept_id, None)


def _rewrite_one(store: Store, before: int, concept_id: int,
                 column: Callable[[ColumnStore], np.ndarray] | None) -> None:
    """Keep every column but ``concept_id``'s, which ``column(cs)`` replaces (``None``: dropped);
    a store that was not current at ``before`` (or has segments), or a transaction that was not
    the only one since, rebuilds."""
    cs = read(store.root)
    generation = store.scores_generation()
    if cs is None or cs.segments or cs.generation != before or generation != before + 1:
        open_columns(store)
        return
    writer = Writer(store.root, generation, cs.ids, cs.digest)
    for cid in cs.files:
        if cid != concept_id:
            writer.keep(cs, cid)
    if column is not None:
        writer.add(concept_id, column(cs))
    writer.commit(store.root)


def writer_running(root: Path) -> bool:
    """Whether another live process holds the index's write lock (its pid is in the lock
    file while it holds it; a killed writer's pid is dead)."""
    from .lock import LOCK_NAME

    try:
        text = (Path(root) / LOCK_NAME).read_text().strip()
    except OSError:
        return False
    if not text.startswith("pid "):
        return False
    try:
        pid = int(text.split()[1])
    except (ValueError, IndexError):
        return False
    return pid != os.getpid() and Path(f"/proc/{pid}").exists()


class Columns:
    """A reader's view: the store matching the database now, the last one a running writer
    published, or None (rank through SQLite then: only while a crashed writer's store is rebuilt
    in the background, or when the folder cannot be written).

    The database's generation is one indexed read per query; the manifest is read
    again only when it changed. A stale store with no writer running is rebuilt here
    (after a crash: seconds at a million shots) before answering, or with
    ``background=True`` (a server) in a thread while queries go through SQLite.
    """

    def __init__(self, store: Store, *, rebuild: bool = True, background: bool = False):
        self.store, self.rebuild, self.background = store, rebuild, background
        self.current: ColumnStore | None = None
        self._builder: threading.Thread | None = None
        self.names: dict[str, int] = {}  # the concepts the current store was built with

    def get(self) -> ColumnStore | None:
        generation = self.store.scores_generation()
        if self.current is not None and self.current.generation == generation:
            return self.current
        cs = read(self.store.root, generation)
        # The full digest scans the shot table (0.6 s at a million shots): a reader checks
        # its O(log n) part; writers check all of it (open_columns, Update).
        if cs is not None and cs.digest["max"] != self.store.max_shot_id():
            cs = None
        if cs is None and writer_running(self.store.root):
            return self._published(generation)
        if cs is None and self.rebuild:
            if self.background:  # a server: answer through SQLite until the new store is there
                self._build_in_background()
                self.current = None
                return None
            try:
                cs = build(self.store)
            except OSError as exc:  # a read-only folder: rank through SQLite
                log.warning("cannot write the column store (%s); searching through SQLite", exc)
                self.rebuild = False
            cs = cs if cs is not None and cs.generation == self.store.scores_generation() else None
        return self._use(cs)

    def _published(self, generation: int) -> ColumnStore | None:
        """While a writer runs: the last store it published (behind the database by at most one
        segment), but not one newer than ``generation``, what this reader's snapshot of the
        database holds (its exact scores would be missing), unless there is no other."""
        peek = _peek_generation(folder_of(self.store.root))
        current = self.current
        if current is not None and (peek == current.generation or (
                peek is not None and peek > generation >= current.generation)):
            return current
        return self._use(read(self.store.root))

    def _use(self, cs: ColumnStore | None) -> ColumnStore | None:
        if cs is not None:
            cs.source = self.store
            self.names = self.store.concept_ids()  # concepts change only with the generation
        self.current = cs
        return cs

    def _build_in_background(self) -> None:
        if self._builder is not None and self._builder.is_alive():
            return

        def run() -> None:
            store = Store.open(self.store.root, create=False)
            try:
                build(store)
            except Exception as exc:  # noqa: BLE001 - logged; searches go on through SQLite
                log.warning("%s: could not rebuild the column store: %s", self.store.root, exc)
            finally:
                store.close()

        log.info("%s: rebuilding the column store in the background", self.store.root)
        self._builder = threading.Thread(target=run, name="vidconcept-columns", daemon=True)
        self._builder.start()


class Update:
    """A writer's record of the videos it writes: published as a segment once
    :data:`SEGMENT_SHOTS` shots have gathered or :data:`SEGMENT_SECONDS` seconds have passed
    since the last one (so searches see them while it runs), and merged into new main
    columns at the end (:meth:`finish`).

    Every recorded write must be the one transaction that moved the generation by one;
    anything else (a write it did not see) makes :meth:`finish` rebuild instead.
    """

    def __init__(self, store: Store):
        self.store = store
        base = read(store.root)
        ok = base is not None and fresh(store, base) and base.digest == store.shot_digest()
        self.base = base if ok else None
        if self.base is None:  # stale after a crash: rebuilt once now, so segments can follow
            with contextlib.suppress(OSError):
                self.base = open_columns(store)
        self.expected = self.base.generation if self.base is not None else -1
        self.pending: list[tuple[np.ndarray, np.ndarray, list[int], np.ndarray]] = []
        self.published_at = time.monotonic()

    def before_write(self) -> None:
        if self.base is not None and self.store.scores_generation() != self.expected:
            self.base = None  # someone else wrote: rebuild at the end

    def wrote(self, shot_ids, scores: np.ndarray, concept_ids, removed) -> None:
        """One committed :meth:`Store.replace_video`; publishes a segment when enough has gathered."""
        if self.base is None:
            return
        self.expected += 1
        self.pending.append((np.asarray(shot_ids, np.int64), np.asarray(scores, np.float32), list(concept_ids),
                             np.asarray(list(removed), np.int64)))
        # a slow ingest (one long video a minute) publishes every video; a fast one every few seconds
        if sum(len(p[0]) for p in self.pending) >= SEGMENT_SHOTS or \
                time.monotonic() - self.published_at >= SEGMENT_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Publish the pending writes as one segment (a no-op when nothing is pending)."""
        if self.base is None or not self.pending:
            return
        if self.store.scores_generation() != self.expected:
            self.base = None
            return
        cids = sorted({c for p in self.pending for c in p[2]} | set(self.base.files))
        ids = np.concatenate([p[0] for p in self.pending])
        dead = np.concatenate([p[3] for p in self.pending])
        codes = np.zeros((len(cids), len(ids)), np.uint8)
        at = 0
        for shot_ids, scores, concept_ids, _ in self.pending:
            for j, cid in enumerate(concept_ids):
                col = np.where(scores[:, j] >= SCORE_FLOOR, scores[:, j], 0)
                codes[cids.index(cid), at : at + len(shot_ids)] = encode(col)
            at += len(shot_ids)
        # a shot written twice in this batch (a video re-ingested twice): the later one wins
        last = len(ids) - 1 - np.unique(ids[::-1], return_index=True)[1]
        keep = np.zeros(len(ids), bool)
        keep[last] = True
        ids, codes = ids[keep], codes[:, keep]
        self.base = self._publish_segment(ids, dead, cids, codes)
        self.pending, self.published_at = [], time.monotonic()
        if len(self.base.segments) > MAX_SEGMENTS:
            self.base = merge(self.store, self.base)

    def _publish_segment(self, ids: np.ndarray, dead: np.ndarray, cids: list[int], codes: np.ndarray) -> ColumnStore:
        base, folder = self.base, folder_of(self.store.root)
        tag = f"{self.expected}-{secrets.token_hex(4)}"
        names = (f"seg-ids.{tag}.i8", f"seg-dead.{tag}.i8", f"seg-codes.{tag}.u8")
        ids.tofile(folder / names[0])
        dead.tofile(folder / names[1])
        codes.tofile(folder / names[2])
        seg = Segment(ids, dead, cids, codes, names)
        view = ColumnStore(folder, self.expected, base.main_ids, base.files, {}, {}, base.segments + [seg])
        manifest = json.loads((folder / MANIFEST).read_text())
        manifest["generation"] = self.expected
        manifest["digest"] = digest_of(view.ids)
        manifest["segments"] = manifest.get("segments", []) + [
            {"ids": names[0], "dead": names[1], "codes": names[2], "concepts": cids, "n": len(ids),
             "n_dead": len(dead)}]
        publish(folder, manifest)
        cs = read(self.store.root, self.expected)
        if cs is None:
            raise OSError(f"{folder}: the segment just published cannot be read back")
        cs.source = self.store
        return cs

    def finish(self) -> ColumnStore:
        """Publish the store for what the database holds now: segments merged into main columns."""
        store = self.store
        if self.base is not None:
            try:
                self.flush()
            except OSError as exc:
                log.warning("%s: could not publish a segment (%s); rebuilding", store.root, exc)
                self.base = None
        base = self.base
        if base is None or store.scores_generation() != self.expected:
            return open_columns(store)
        if not base.segments:
            return base
        if base.digest != store.shot_digest():
            log.warning("column store update does not match the shot table; rebuilding")
            return open_columns(store, rebuild=True)
        return merge(store, base)


def digest_of(ids: np.ndarray) -> dict:
    """What :meth:`Store.shot_digest` says of a shot table holding exactly ``ids``."""
    return {"count": len(ids), "sum": int(ids.sum()), "max": int(ids.max()) if len(ids) else 0}


def merge(store: Store, cs: ColumnStore) -> ColumnStore:
    """Main columns and segments folded into new main columns (codes only: nothing read from SQLite)."""
    ids = cs.ids
    writer = Writer(store.root, cs.generation, ids, digest_of(ids))
    for cid in store.concept_ids().values():
        writer.add_codes(cid, np.asarray(cs.codes(cid)))
    tmp = writer.manifest()
    with _manifest_lock(writer.folder):  # the same generation: replace the one with segments
        path = writer.folder / f"{MANIFEST}.{writer.tag}.tmp"
        path.write_text(json.dumps(tmp))
        os.replace(path, writer.folder / MANIFEST)
        _collect_garbage(writer.folder)
    merged = read(store.root)
    if merged is None:
        raise OSError(f"{writer.folder}: the merged column store cannot be read back")
    merged.source = store
    return merged

"""Per-shot concept scores as memory-mapped columns beside SQLite (issue 23).

SQLite's ``scores`` table is the source of truth. A model of independent sigmoid
detectors stores a score for almost every (shot, concept) pair, so ranking a
million shots through SQLite reads millions of rows. The column store keeps the
same scores as one pair of files per concept, in shot-id order:

* ``<cid>.<tag>.u8``: an 8-bit *code* per shot, read in full by a query. Code 0
  means exactly 0 (no stored score), 255 exactly 1, and code ``k`` in 1..254 a
  score in ``[(k-1)/254, k/254)``: a resolution of 1/254 ≈ 0.0039.
* ``<cid>.<tag>.f32``: the exact float32 score, read only at the few positions
  that the codes cannot order (see :mod:`vidconcept.search.rank`), so rankings
  and totals are identical to SQLite's while a query touches 1 byte per shot.

``ids.<tag>.i8`` maps row → shot id. ``manifest.json`` names the files and the
``scores_generation`` of the database they were built at (a counter every write
of shots, concepts or scores bumps in its transaction) plus a digest of the shot
table. A store whose generation or digest differs from the database is stale: a
reader then ranks through SQLite (as before this store) and rebuilds it when no
writer is running; writers update it after they commit. Files are never changed
in place: new ones get a new tag, the manifest is replaced atomically, and files
no manifest names are deleted afterwards (a reader's open memory maps stay valid).
So a reader sees either the old or the new store, never a mix, and after a
``kill -9`` the store is at worst stale, never wrong.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import mmap
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .store import Store

log = logging.getLogger(__name__)

FOLDER = "columns"
MANIFEST = "manifest.json"
FORMAT = 1
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
class ColumnStore:
    """One consistent version of the column store (what one manifest names)."""

    folder: Path
    generation: int
    ids: np.ndarray  # int64, ascending: row → shot id
    files: dict[int, tuple[str, str]]  # concept id → (codes file, exact file)
    digest: dict
    hists: dict[int, np.ndarray] = field(default_factory=dict)  # concept id → shots per code (256)
    _codes: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _exact: dict[int, mmap.mmap] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def has(self, concept_id: int) -> bool:
        return concept_id in self.files

    def codes(self, concept_id: int) -> np.ndarray:
        """The uint8 codes of one concept over all shots (memory-mapped)."""
        col = self._codes.get(concept_id)
        if col is None:
            col = self._codes[concept_id] = self._map(self.files[concept_id][0], np.uint8)
        return col

    def exact(self, concept_id: int) -> np.ndarray:
        """The float32 scores of one concept over all shots, read into memory (4 bytes a shot)."""
        try:
            return np.fromfile(self.folder / self.files[concept_id][1], np.float32)
        except FileNotFoundError as exc:
            raise StaleColumns(str(exc)) from exc

    def exact_at(self, concept_id: int, rows: np.ndarray) -> np.ndarray:
        """Exact scores at some rows, from a memory map whose pages are dropped again after
        (``MADV_DONTNEED``): reading a few hundred scattered scores costs microseconds, and
        neither they nor their neighbours (fault-around) stay resident."""
        mm = self._exact.get(concept_id)
        if mm is None:
            if not len(self.ids):
                return np.empty(0, np.float32)
            try:
                with open(self.folder / self.files[concept_id][1], "rb") as fh:
                    mm = self._exact[concept_id] = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except FileNotFoundError as exc:
                raise StaleColumns(str(exc)) from exc
        out = np.frombuffer(mm, np.float32)[np.asarray(rows, np.int64)]
        mm.madvise(mmap.MADV_DONTNEED)
        return out

    def positions(self, shot_ids: np.ndarray) -> np.ndarray:
        """Rows of the given shot ids, ascending (ids the store does not hold are left out)."""
        want = np.unique(np.asarray(shot_ids, np.int64))
        pos = np.searchsorted(self.ids, want)
        pos = pos[pos < len(self.ids)]
        return pos[self.ids[pos] == want[: len(pos)]] if len(pos) else pos

    def histogram(self, concept_id: int) -> np.ndarray:
        """Shots per code of one concept (kept in the manifest: no scan)."""
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

    def _map(self, name: str, dtype) -> np.ndarray:
        if not len(self.ids):
            return np.empty(0, dtype)
        try:
            return np.memmap(self.folder / name, dtype=dtype, mode="r", shape=(len(self.ids),))
        except FileNotFoundError as exc:
            raise StaleColumns(str(exc)) from exc


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
        files = {int(cid): (f[0], f[1]) for cid, f in meta["concepts"].items()}
        if len(ids) != n or any(
            (folder / a).stat().st_size != n or (folder / b).stat().st_size != 4 * n for a, b in files.values()
        ):
            log.warning("%s: column store files do not match their manifest; rebuilding", folder)
            return None
        hist = np.fromfile(folder / meta["hists"], dtype=np.int64).reshape(len(files), 256)
        hists = dict(zip(files, hist))
        return ColumnStore(folder, int(meta["generation"]), ids, files, meta["digest"], hists)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            if (folder / MANIFEST).read_text() != text:
                raise _Replaced from None
        log.warning("%s: a column store file is missing; rebuilding", folder)
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: column store is unreadable (%s); rebuilding", folder, exc)
        return None


class Writer:
    """Writes a new version of the store: column files first, then the manifest."""

    def __init__(self, root: Path, generation: int, ids: np.ndarray, digest: dict):
        self.folder = folder_of(root)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.generation, self.digest = generation, digest
        self.ids = np.ascontiguousarray(ids, np.int64)
        self.tag = f"{generation}-{secrets.token_hex(4)}"
        self.files: dict[int, tuple[str, str]] = {}
        self.hists: dict[int, list[int]] = {}
        self.ids_name = f"ids.{self.tag}.i8"
        self.ids.tofile(self.folder / self.ids_name)

    def add(self, concept_id: int, scores: np.ndarray) -> None:
        """One concept's scores over :attr:`ids` (float, 0 where not stored)."""
        scores = np.asarray(scores, np.float32)
        if scores.shape != self.ids.shape:
            raise ValueError(f"concept {concept_id}: {scores.shape} scores for {len(self.ids)} shots")
        names = (f"{concept_id}.{self.tag}.u8", f"{concept_id}.{self.tag}.f32")
        codes = encode(scores)
        codes.tofile(self.folder / names[0])
        scores.tofile(self.folder / names[1])
        self.files[concept_id] = names
        self.hists[concept_id] = np.bincount(codes, minlength=256).tolist()

    def keep(self, old: ColumnStore, concept_id: int) -> None:
        """Reuse an unchanged column of ``old`` (same rows)."""
        self.files[concept_id] = old.files[concept_id]
        self.hists[concept_id] = old.histogram(concept_id).tolist()

    def commit(self, root: Path) -> ColumnStore:
        """Publish this version unless a newer one is there already; return the published store."""
        hists = f"hists.{self.tag}.i8"
        np.asarray([self.hists[c] for c in self.files], np.int64).reshape(len(self.files), 256).tofile(
            self.folder / hists)
        manifest = {"format": FORMAT, "generation": self.generation, "n": len(self.ids), "ids": self.ids_name,
                    "digest": self.digest, "concepts": {str(c): list(f) for c, f in self.files.items()},
                    "hists": hists}
        with _manifest_lock(self.folder):
            current = read(root)
            # The same generation is the same database state: keep the one already there.
            if current is None or current.generation < self.generation:
                tmp = self.folder / f"{MANIFEST}.{self.tag}.tmp"
                tmp.write_text(json.dumps(manifest))
                os.replace(tmp, self.folder / MANIFEST)
            _collect_garbage(self.folder)
        published = read(root)
        return published if published is not None else ColumnStore(
            self.folder, self.generation, self.ids, dict(self.files), self.digest,
            {c: np.asarray(h) for c, h in self.hists.items()})


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
    keep = {meta["ids"], meta["hists"], *(n for f in meta["concepts"].values() for n in f)}
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
    """A new store from the database, read in one transaction (a consistent snapshot), and published."""
    db = store.db
    began = not db.conn.in_transaction
    if began:
        db.execute("BEGIN")
    try:
        generation, digest = store.scores_generation(), store.shot_digest()
        ids = np.fromiter((r[0] for r in db.execute("SELECT id FROM shots ORDER BY id")), np.int64)
        writer = Writer(store.root, generation, ids, digest)
        for (cid,) in db.execute("SELECT id FROM concepts ORDER BY id").fetchall():
            writer.add(cid, scatter(ids, *store.concept_column(cid)))
    finally:
        if began:
            db.execute("ROLLBACK")
    log.info("column store built: %d shots x %d concepts (generation %d)", len(ids), len(writer.files), generation)
    return writer.commit(store.root)


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
        col[col < _score_floor()] = 0.0  # as SQLite stores them
        return col
    _rewrite_one(store, before, concept_id, column)


def drop_concept(store: Store, before: int, concept_id: int) -> None:
    """After a transaction that deleted one concept: the same store without its column."""
    _rewrite_one(store, before, concept_id, None)


def _rewrite_one(store: Store, before: int, concept_id: int,
                 column: Callable[[ColumnStore], np.ndarray] | None) -> None:
    """Keep every column but ``concept_id``'s, which ``column(cs)`` replaces (``None``: dropped);
    a store that was not current at ``before``, or a transaction that was not the only one since, rebuilds."""
    cs = read(store.root)
    generation = store.scores_generation()
    if cs is None or cs.generation != before or generation != before + 1:
        open_columns(store)
        return
    writer = Writer(store.root, generation, cs.ids, cs.digest)
    for cid in cs.files:
        if cid != concept_id:
            writer.keep(cs, cid)
    if column is not None:
        writer.add(concept_id, column(cs))
    writer.commit(store.root)


def _score_floor() -> float:
    from .store import SCORE_FLOOR

    return SCORE_FLOOR


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
    """A reader's view: the store matching the database now, or None (rank through SQLite then).

    The database's generation is one indexed read per query; the manifest is read
    again only when it changed. A stale store is rebuilt here when no writer is
    running (after a crash: minutes at a million shots), before answering, or with
    ``background=True`` (a server) in a thread while queries go through SQLite;
    while a writer runs, its own update follows its commits.
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
        if cs is not None:
            self.names = self.store.concept_ids()  # concepts change only with the generation
        if cs is None and self.rebuild and not writer_running(self.store.root):
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
            if cs is not None:
                self.names = self.store.concept_ids()
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
    """A writer's record of the videos it wrote since the store was current, applied in
    one pass at the end (:meth:`finish`) instead of a rebuild from SQLite.

    Every recorded write must be the one transaction that moved the generation by one;
    anything else (a write it did not see) makes :meth:`finish` rebuild instead.
    """

    def __init__(self, store: Store):
        self.store = store
        base = read(store.root)
        ok = base is not None and fresh(store, base) and base.digest == store.shot_digest()
        self.base = base if ok else None
        self.expected = base.generation if ok else -1
        self.removed: list[np.ndarray] = []
        self.added: list[tuple[np.ndarray, np.ndarray, list[int]]] = []

    def before_write(self) -> None:
        if self.base is not None and self.store.scores_generation() != self.expected:
            self.base = None  # someone else wrote: rebuild at the end

    def wrote(self, shot_ids, scores: np.ndarray, concept_ids, removed) -> None:
        """One committed :meth:`Store.replace_video`."""
        if self.base is None:
            return
        self.expected += 1
        self.removed.append(np.asarray(list(removed), np.int64))
        self.added.append((np.asarray(shot_ids, np.int64), np.asarray(scores, np.float32), list(concept_ids)))

    def finish(self) -> ColumnStore:
        """Publish the store for what the database holds now."""
        store, base = self.store, self.base
        generation = store.scores_generation()
        if base is None or generation != self.expected:
            return open_columns(store)
        if not self.added:
            return base
        from .store import SCORE_FLOOR

        gone = np.concatenate(self.removed + [a[0] for a in self.added])
        keep = ~np.isin(base.ids, gone)
        new_ids = np.concatenate([base.ids[keep]] + [a[0] for a in self.added])
        order = np.argsort(new_ids, kind="stable")
        new_ids = new_ids[order]
        digest = {"count": len(new_ids), "sum": int(new_ids.sum()), "max": int(new_ids.max()) if len(new_ids) else 0}
        if digest != store.shot_digest():
            log.warning("column store update does not match the shot table; rebuilding")
            return open_columns(store, rebuild=True)
        writer = Writer(store.root, generation, new_ids, digest)
        for cid in store.concept_ids().values():
            parts = [base.exact(cid)[keep] if base.has(cid) else np.zeros(int(keep.sum()), np.float32)]
            for ids, scores, cids in self.added:
                parts.append(scores[:, cids.index(cid)] if cid in cids else np.zeros(len(ids), np.float32))
            col = np.concatenate(parts)[order]
            col[col < SCORE_FLOOR] = 0.0  # as SQLite stores them
            writer.add(cid, col)
        return writer.commit(store.root)

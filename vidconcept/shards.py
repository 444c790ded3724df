"""Shards: an archive split by video into ordinary index folders, searched as one.

A manifest (a small JSON file) names the shard folders; each is an ordinary index. A video
belongs to one shard, picked by rendezvous hashing of its path, so re-ingesting a file goes
to the shard that holds it. Queries fan out to every shard through the public
:class:`~vidconcept.api.Index` API and merge exactly: each shard returns its best
``offset + top`` shots in its own order and a k-way merge cuts the page out of them, so the
page, its scores, its order and the summed total are those of one index holding every video
(docs/shards.md says where "exactly" stops). Shards are served on threads of this process or,
with ``serve="ray"``, by one Ray actor each (on the nodes that hold them).

Example::

    from vidconcept.shards import ShardedIndex

    ShardedIndex.init("archive/shards.json", count=4)
    with ShardedIndex("archive/shards.json") as archive:        # serve="ray": one actor per shard
        archive.ingest(["/archive/videos"])
        page = archive.search("anchor AND studio NOT night", top=20)
        best = page[0]                                          # .shard, .shot_id, .score, .video …
        archive.similar(shot=best.ref)
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import heapq
import itertools
import json
import logging
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .api import Index
from .errors import IndexError_, ShardError, UnknownNameError, UsageError, VidconceptError, unknown
from .ingest import IngestSummary, discover
from .records import ShotHit

log = logging.getLogger(__name__)

FORMAT = "vidconcept-shards"
#: The most results one page may hold (as for ``Index.search``).
MAX_TOP = 10_000
#: A shard reads the best ``offset + top`` shots in ``Index.search`` pages of this many.
PAGE = MAX_TOP
#: Seconds a shard may take to answer before the call fails (or, with ``partial``, goes on without it).
TIMEOUT_S = 60.0

#: A shot of a sharded index: (shard name, shot id inside that shard); written ``NAME:ID``.
ShotRef = tuple[str, int]
#: A shot of one shard as it ranks: (shot id, score unrounded; ``ShotHit.score`` is rounded for display).
Ranked = tuple[int, float]
Serve = Literal["local", "ray"]


# ---- manifest and routing ------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """One shard: its name (routing hashes it, so it never changes) and its index folder."""

    name: str
    path: Path


@dataclass(frozen=True)
class Manifest:
    """The manifest file: which index folders make up the archive (relative paths are to its folder)."""

    path: Path
    shards: tuple[Shard, ...]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Manifest":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise UsageError(f"{path}: no shard manifest here (write one with `vidconcept shards init {path} "
                             "--count N`)") from exc
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: not a readable shard manifest: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("shards"), list):
            raise UsageError(f"{path}: not a shard manifest (expected {{\"format\": \"{FORMAT}\", \"shards\": [...]}})")
        shards = []
        for entry in data["shards"]:
            if not isinstance(entry, dict) or not entry.get("name") or not entry.get("path"):
                raise UsageError(f"{path}: each shard needs a name and a path, not {entry!r}")
            folder = Path(entry["path"])
            shards.append(Shard(str(entry["name"]), folder if folder.is_absolute() else path.parent / folder))
        return cls(path, tuple(shards)).checked()

    def checked(self) -> "Manifest":
        names = [s.name for s in self.shards]
        if not names:
            raise UsageError(f"{self.path}: the manifest lists no shard")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise UsageError(f"{self.path}: shard names must be unique; repeated: {', '.join(repeated)}")
        return self

    def save(self) -> None:
        def relative(p: Path) -> str:
            try:
                return str(p.resolve().relative_to(self.path.parent.resolve()))
            except ValueError:
                return str(p.resolve())

        data = {"format": FORMAT, "version": 1,
                "shards": [{"name": s.name, "path": relative(s.path)} for s in self.shards]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.path)


def route(key: str, names: Sequence[str]) -> str:
    """The shard a video goes to: rendezvous (highest random weight) hashing of its absolute path
    (Thaler & Ravishankar, 1998). The same path gets the same shard in every process and on every
    machine, and a shard added later would take only the videos it wins, where ``hash % N`` moves most."""
    return max(names, key=lambda name: hashlib.sha256(f"{name}\0{key}".encode()).digest())


def parse_ref(ref: ShotRef | str) -> ShotRef:
    """``("s-01", 42)`` or ``"s-01:42"`` → ``("s-01", 42)``."""
    if isinstance(ref, str):
        name, sep, number = ref.rpartition(":")
        if not sep or not name or not number.isdigit():
            raise UsageError(f"a shot of a sharded index is SHARD:ID (e.g. shard-00:42), not {ref!r}")
        return name, int(number)
    name, shot = ref
    return str(name), int(shot)


class OrderLog:
    """The order videos were ingested in, over all shards, and the shard of each (beside the manifest).

    A single index ranks equal scores by shot id, which follows the order videos were written.
    The log is that order for the archive, so ties between shards fall as in one index that
    ingested the same paths in the same calls (each call's files in discovery order, as the local
    engine writes them). A video that reached a shard another way (that shard's own
    ``vidconcept ingest``) is adopted when first seen, by (ingest time, path).
    """

    def __init__(self, path: Path):
        self.path = path
        self.seq: dict[str, int] = {}
        self.shard: dict[str, str] = {}
        if path.exists():
            self._load()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("CREATE TABLE IF NOT EXISTS videos (path TEXT PRIMARY KEY, shard TEXT NOT NULL, "
                     "seq INTEGER NOT NULL)")
        return conn

    def _load(self) -> None:
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT path, shard, seq FROM videos").fetchall()
        self.seq = {p: q for p, _, q in rows}
        self.shard = {p: s for p, s, _ in rows}

    def key(self, path: str) -> float:
        return self.seq.get(path, math.inf)

    def add(self, items: Sequence[tuple[str, str]]) -> None:
        """Append ``(path, shard)`` pairs the log has not seen, in this order."""
        new = list(dict((p, s) for p, s in items if p not in self.seq).items())
        if not new:
            return
        try:
            with closing(self._connect()) as conn:
                conn.execute("BEGIN IMMEDIATE")
                start = conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM videos").fetchone()[0]
                conn.executemany("INSERT OR IGNORE INTO videos VALUES (?, ?, ?)",
                                 [(p, s, start + i) for i, (p, s) in enumerate(new)])
                conn.commit()
            self._load()
        except sqlite3.Error as exc:  # e.g. a read-only archive: the order holds for this process
            log.warning("%s: cannot record the ingest order (%s); kept in memory", self.path, exc)
            start = max(self.seq.values(), default=-1) + 1
            for i, (p, s) in enumerate(new):
                self.seq[p], self.shard[p] = start + i, s


# ---- results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardHit:
    """A shot of one shard: the shard's name and its :class:`~vidconcept.records.ShotHit` (ids are the
    shard's own). The hit's fields read through: ``.score``, ``.video``, ``.start_s`` …"""

    shard: str
    hit: ShotHit
    order: tuple = field(default=(), repr=False, compare=False)  # the merge's sort key: see ShardedIndex._page

    @property
    def ref(self) -> ShotRef:
        return self.shard, self.hit.shot_id

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("shard", "hit", "order"):
            raise AttributeError(name)
        return getattr(self.hit, name)

    def to_dict(self) -> dict:
        return {"shard": self.shard, "ref": f"{self.shard}:{self.hit.shot_id}", **self.hit.to_dict()}


@dataclass
class ShardedResults(Sequence):
    """A page of results over all shards, how many shots match in all, and the shards that did
    not answer (only with ``partial=True``; the page and total then cover the others)."""

    results: list[ShardHit]
    total: int
    unavailable: list[str] = field(default_factory=list)

    def __getitem__(self, i):
        return self.results[i]

    def __len__(self) -> int:
        return len(self.results)

    @property
    def complete(self) -> bool:
        return not self.unavailable

    def to_dict(self) -> dict:
        return {"total": self.total, "unavailable": self.unavailable, "results": [r.to_dict() for r in self.results]}


# ---- serving one shard ---------------------------------------------------------------------------
class ShardServer:
    """One shard's index behind the calls a :class:`ShardedIndex` makes: in this process or as a Ray
    actor. It uses the public :class:`~vidconcept.api.Index` API only, so any index folder is a shard."""

    def __init__(self, name: str, path: str, model: str | None = None, device: str | None = None):
        self.name = name
        self.index = Index(path, model=model, device=device)

    def ping(self) -> str:
        return self.name

    def rank(self, query: str, depth: int, min_score: float, video: int | None) -> tuple[list[Ranked], int]:
        """The shard's best ``depth`` shots as ``(shot id, score)``, best first (ranked in pages of
        :data:`PAGE`), and its total."""
        ranked: list[Ranked] = []
        total = 0
        for offset in range(0, depth, PAGE):
            try:
                page, total = self.index.rank(query, top=min(PAGE, depth - offset), offset=offset,
                                              min_score=min_score, video=video)
            except UnknownNameError:
                if self.index.info()["shots"] == 0:  # a shard nothing was ingested into yet
                    return [], 0
                raise
            ranked += page
            if offset + PAGE >= total:
                break
        return ranked, total

    def nearest(self, top: int, **query) -> list[Ranked]:
        return self.index.nearest(top=top, **query)

    def records(self, ranked: list[Ranked]) -> list[ShotHit]:
        """The records of ranked shots (video, times, top concepts …), in order."""
        return self.index.results_for(ranked)

    def feature(self, shot: int) -> np.ndarray | None:
        return self.index.feature(shot)

    def info(self) -> dict:
        return self.index.info()

    def concepts(self, min_score: float) -> list[dict]:
        return self.index.concepts(min_score)

    def videos(self) -> list[dict]:
        return self.index.videos()

    def ingest(self, paths: list[str], options: dict) -> IngestSummary:
        return self.index.ingest(paths, **options)

    def close(self) -> None:
        self.index.close()


class _LocalClient:
    """A shard served in this process on its own thread: one call at a time per shard, shards in parallel."""

    def __init__(self, shard: Shard, model: str | None, device: str | None):
        self.pool = cf.ThreadPoolExecutor(1, thread_name_prefix=f"shard-{shard.name}")
        self.server = self.pool.submit(ShardServer, shard.name, str(shard.path), model, device)

    def call(self, method: str, *args, **kwargs) -> cf.Future:
        return self.pool.submit(lambda: getattr(self.server.result(), method)(*args, **kwargs))

    def close(self) -> None:
        if self.server.done() and self.server.exception() is None:
            self.call("close").result()
        self.pool.shutdown()


class _RayPending:
    def __init__(self, ref):
        self.ref = ref

    def result(self, timeout: float | None = None):
        import ray

        return ray.get(self.ref, timeout=timeout)


class _RayClient:
    """A shard served by a Ray actor (``SPREAD``: shards go to different nodes where the cluster has them)."""

    def __init__(self, actor_class, shard: Shard, model: str | None, device: str | None):
        self.actor = actor_class.remote(shard.name, str(shard.path.resolve()), model, device)

    def call(self, method: str, *args, **kwargs) -> _RayPending:
        return _RayPending(getattr(self.actor, method).remote(*args, **kwargs))

    def close(self) -> None:
        import ray

        ray.kill(self.actor)


def _cause(exc: BaseException) -> BaseException:
    """The error raised inside a Ray actor (Ray wraps it), else ``exc``."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _is_shard_fault(exc: BaseException) -> bool:
    """A shard that cannot answer (missing folder, crash, timeout) rather than a bad request,
    which every shard would refuse alike (an unknown concept, a malformed query)."""
    return not isinstance(exc, VidconceptError) or isinstance(exc, IndexError_)


# ---- the archive ---------------------------------------------------------------------------------
class ShardedIndex:
    """Several index folders, one per shard of an archive split by video, searched as one index.

    Args:
        manifest: the manifest file (:meth:`init` writes one).
        serve: ``"local"``: each shard on a thread of this process; ``"ray"``: one Ray actor per
            shard (joins ``ray_address``, else this process's runtime, else starts a local one).
        partial: a shard that cannot be opened or does not answer within ``timeout`` seconds is left
            out and named in the results' ``unavailable``, instead of raising :class:`ShardError`.
        model, device: as for :class:`~vidconcept.api.Index` (ingest and image queries).
    """

    def __init__(self, manifest: str | os.PathLike, *, serve: Serve = "local", ray_address: str | None = None,
                 partial: bool = False, timeout: float = TIMEOUT_S, model: str | os.PathLike | None = None,
                 device: str | None = None):
        if serve not in ("local", "ray"):
            raise UsageError(f"serve must be 'local' or 'ray', not {serve!r}")
        self.manifest = Manifest.load(manifest)
        self.serve, self.partial, self.timeout = serve, partial, timeout
        self.shards = {s.name: s for s in self.manifest.shards}
        self.order = OrderLog(self.manifest.path.with_name(self.manifest.path.stem + ".order.db"))
        self._position = {name: i for i, name in enumerate(self.shards)}
        self._own_ray = False
        self.unavailable: list[str] = []  # shards that could not be opened (with partial)
        model = str(model) if model is not None else None
        if serve == "ray":
            actor_class = self._ray_actor_class(ray_address)
            self._clients = {s.name: _RayClient(actor_class, s, model, device) for s in self.manifest.shards}
        else:
            self._clients = {s.name: _LocalClient(s, model, device) for s in self.manifest.shards}
        try:
            _, self.unavailable = self._fan("ping")
        except BaseException:
            self.close()
            raise

    @classmethod
    def init(cls, manifest: str | os.PathLike, count: int | None = None,
             paths: Sequence[str | os.PathLike] | None = None, prefix: str = "shard") -> Manifest:
        """Write a manifest over ``count`` new shards (empty indexes ``PREFIX-00`` … beside it) or over
        existing index folders ``paths`` (named after their folders). The set of shards is fixed
        once written: routing hashes their names."""
        manifest = Path(manifest)
        if manifest.exists():
            raise UsageError(f"{manifest} exists: a manifest is written once (routing depends on its shards)")
        if (count is None) == (not paths):
            raise UsageError("give either a number of new shards or the index folders to use as shards")
        if count is not None:
            if not isinstance(count, int) or not 1 <= count <= 1000:
                raise UsageError(f"the number of shards must be a whole number from 1 to 1000, not {count!r}")
            shards = [Shard(f"{prefix}-{i:02d}", manifest.parent / f"{prefix}-{i:02d}") for i in range(count)]
        else:
            shards = [Shard(Path(p).resolve().name, Path(p)) for p in paths]
        result = Manifest(manifest, tuple(shards)).checked()
        for shard in shards:
            with Index(shard.path, create=count is not None):  # an existing folder must hold an index
                pass
        manifest.parent.mkdir(parents=True, exist_ok=True)
        result.save()
        return result

    def close(self) -> None:
        for client in self._clients.values():
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001 - closing the others matters more
                log.warning("closing a shard: %s", exc)
        if self._own_ray:
            import ray

            ray.shutdown()

    def __enter__(self) -> "ShardedIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- fan-out ----------------------------------------------------------
    def _ray_actor_class(self, address: str | None):
        try:
            import ray
        except ImportError as exc:
            raise UsageError("serving shards through Ray needs the ray extra: pip install 'vidconcept[ray]'") from exc
        if not ray.is_initialized():
            try:
                ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            except (ConnectionError, ValueError) as exc:
                raise UsageError(f"cannot join the Ray cluster at {address!r}: {exc}") from exc
            self._own_ray = True
        # num_cpus=0: a shard mostly waits on its disk; it must not hold a core other work needs.
        return ray.remote(ShardServer).options(num_cpus=0, scheduling_strategy="SPREAD")

    def _fan(self, method: str, *args, only: Sequence[str] | None = None,
             per_shard: dict[str, dict] | None = None, **kwargs) -> tuple[dict[str, Any], list[str]]:
        """Call ``method`` on each live shard (``only`` these; ``per_shard`` extra keyword arguments)
        and wait for all: ``({name: reply}, [shards that did not answer])``."""
        names = [n for n in (self.shards if only is None else only) if n not in self.unavailable]
        pending = {n: self._clients[n].call(method, *args, **{**kwargs, **(per_shard or {}).get(n, {})})
                   for n in names}
        return self._gather(pending)

    def _gather(self, pending: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Wait for every call (so none is left unread), then sort the errors: a request every shard
        refuses alike is the user's (raised as it is); a shard's fault is a :class:`ShardError`,
        or with ``partial`` a name in the list of shards left out."""
        deadline = time.monotonic() + self.timeout
        replies, faults, refused = {}, {}, None
        for name, call in pending.items():
            try:
                replies[name] = call.result(max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - sorted below
                cause = _cause(exc)
                if not _is_shard_fault(cause):
                    refused = refused or cause
                    continue
                timed_out = isinstance(cause, TimeoutError) or type(cause).__name__ == "GetTimeoutError"
                faults[name] = (f"did not answer within {self.timeout:g} s" if timed_out else f"failed: {cause}", exc)
        if refused is not None:
            raise refused
        for name, (problem, exc) in faults.items():
            if not self.partial:
                raise ShardError(f"shard {name!r} ({self.shards[name].path}) {problem}; fix it or its line in "
                                 f"{self.manifest.path}, or search the others with partial=True (CLI: --partial)"
                                 ) from exc
            log.warning("shard %r (%s) %s: left out of the results", name, self.shards[name].path, problem)
        down = list(faults)
        return replies, sorted(set(down) | set(self.unavailable))

    def _page(self, ranked: dict[str, list[Ranked]], start: int, stop: int) -> tuple[list[ShardHit], list[str]]:
        """Shots ``start:stop`` of the shards' ranked lists merged best first, by the scores as ranked
        (not as rounded for display), and the shards that failed to send records.

        Each list keeps its shard's own order. Equal scores of different shards go by ingest order
        (:class:`OrderLog`), as shot ids do in one index; only those ties and the page itself need
        the shots' records, so a shard sends records for those, not for all it ranked.
        """
        pos = self._position
        merged = list(heapq.merge(*[[(-score, pos[name], shot, name) for shot, score in shots]
                                    for name, shots in ranked.items()]))
        window = merged[:stop]
        if window:  # a tie at the page's end may pull in a later shot of another shard
            edge = window[-1][0]
            window += itertools.takewhile(lambda item: item[0] == edge, merged[stop:])
        shards_of = {}
        for item in window:
            shards_of.setdefault(item[0], set()).add(item[3])
        need = {item for i, item in enumerate(window) if start <= i < stop or len(shards_of[item[0]]) > 1}
        records, down = self._records(need)
        if any(records[item].video not in self.order.seq for item in need if item in records):
            self.adopt()

        def key(item: tuple) -> tuple:
            tied = len(shards_of[item[0]]) > 1
            return item[0], self.order.key(records[item].video) if tied else 0, item[1], item[2]

        kept = [item for item in window if item in records or len(shards_of[item[0]]) == 1]
        lists = [[item for item in kept if item[3] == name] for name in ranked]
        page = list(itertools.islice(heapq.merge(*lists, key=key), start, stop))
        return [ShardHit(item[3], records[item], key(item)) for item in page if item in records], down

    def _records(self, need: set[tuple]) -> tuple[dict[tuple, ShotHit], list[str]]:
        """The records of the merged items ``need`` (``(-score, position, shot id, shard)``), asked
        of their shards at once."""
        by_shard: dict[str, list[tuple]] = {}
        for item in sorted(need):
            by_shard.setdefault(item[3], []).append(item)
        calls = {name: {"ranked": [(item[2], -item[0]) for item in items]} for name, items in by_shard.items()}
        replies, down = self._fan("records", only=list(calls), per_shard=calls)
        records = {}
        for name, hits in replies.items():
            found = {hit.shot_id: hit for hit in hits}  # a shot deleted meanwhile has none
            records |= {item: found[item[2]] for item in by_shard[name] if item[2] in found}
        return records, down

    def adopt(self) -> int:
        """Record in the order log the videos shards hold that it has not seen (ingested into a shard
        directly), by (ingest time, path); return how many."""
        replies, _ = self._fan("videos")
        found = sorted((v.get("ingested_at") or "", v["path"], name)
                       for name, videos in replies.items() for v in videos if v["path"] not in self.order.seq)
        self.order.add([(path, name) for _, path, name in found])
        return len(found)

    # ---- search -----------------------------------------------------------
    def search(self, query: str, top: int = 20, min_score: float = 0.0, offset: int = 0,
               video: ShotRef | str | None = None) -> ShardedResults:
        """Shots of all shards ranked by a concept query (as :meth:`Index.search`); ``video``:
        only that video's shots, given as (shard, video id) or ``"SHARD:ID"``."""
        _check_page(top, offset)
        only, video_id = None, None
        if video is not None:
            name, video_id = parse_ref(video)
            self._check_shard(name)
            only = [name]
        depth = offset + top
        replies, down = self._fan("rank", query, depth, min_score, video_id, only=only)
        page, lost = self._page({n: shots for n, (shots, _) in replies.items()}, offset, depth)
        total = sum(total for _, total in replies.values())
        return ShardedResults(page, total, sorted(set(down) | set(lost)))

    def similar(self, shot: ShotRef | str | None = None, image: str | os.PathLike | np.ndarray | None = None,
                top: int = 20) -> ShardedResults:
        """Nearest shots of all shards to a shot (``(shard, id)`` or ``"SHARD:ID"``) or an image, by
        similarity (each shard's FAISS search, merged by score)."""
        _check_page(top, 0)
        if (shot is None) == (image is None):
            raise UsageError("give exactly one of a shot (SHARD:ID) or an image")
        if shot is not None:
            name, shot_id = parse_ref(shot)
            self._check_shard(name)
            vector = self._one(name, "feature", shot_id)
            if vector is None:
                raise UsageError(f"no shot with id {shot_id} in shard {name!r} ({self.shards[name].path})")
            queries = {n: {"vector": vector} for n in self.shards}
            queries[name] = {"shot": shot_id}
            replies, down = self._fan("nearest", top, per_shard=queries)
        else:
            from .images import load_array

            if self.serve == "local":
                self._share_model()
            replies, down = self._fan("nearest", top, image=load_array(image))
        page, lost = self._page(replies, 0, top)
        return ShardedResults(page, len(page), sorted(set(down) | set(lost)))

    def _one(self, name: str, method: str, *args):
        replies, _ = self._fan(method, *args, only=[name])
        if name not in replies:
            raise ShardError(f"shard {name!r} ({self.shards[name].path}) is unavailable")
        return replies[name]

    def _check_shard(self, name: str) -> None:
        if name not in self.shards:
            raise unknown("shard", name, self.shards)

    # ---- counts -----------------------------------------------------------
    def info(self) -> dict:
        """Counts of each shard and of all together (videos, shots …), and the shards that did not answer."""
        replies, down = self._fan("info")
        keys = ("videos", "failed", "missing", "shots", "video_seconds")
        shards = [{"name": n, "path": str(self.shards[n].path),
                   **{k: replies[n].get(k, 0) for k in (*keys, "concepts")}} for n in self.shards if n in replies]
        totals = {k: round(sum(s[k] for s in shards), 3) for k in keys}
        return {"manifest": str(self.manifest.path), "serve": self.serve, **totals, "shards": shards,
                "unavailable": down}

    def concepts(self, min_score: float = 0.5) -> list[dict]:
        """Each concept's shots scoring at least ``min_score``, summed over the shards (first shard's order)."""
        replies, _ = self._fan("concepts", min_score)
        merged: dict[str, dict] = {}
        for rows in replies.values():
            for row in rows:
                if row["name"] in merged:
                    merged[row["name"]]["shots"] += row["shots"]
                else:
                    merged[row["name"]] = dict(row)
        return list(merged.values())

    # ---- ingest -----------------------------------------------------------
    def ingest(self, paths: Sequence[str | os.PathLike] | str | os.PathLike, **options) -> IngestSummary:
        """Index videos (files or folders), each into its shard; ``options`` as for
        :meth:`Index.ingest` (``engine``, ``workers``, ``wait`` …). Shards ingest one after another
        when served locally (they share this machine), all at once on Ray (each on its node)."""
        if self.unavailable:
            raise ShardError(f"cannot ingest while shards are unavailable: {', '.join(self.unavailable)}")
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        start = time.perf_counter()
        videos, problems = discover(paths)
        self.adopt()  # videos shards already hold stay where they are
        plan: dict[str, list[str]] = {}
        order = []
        for video in videos:
            key = str(video.resolve())
            name = self.order.shard.get(key) or route(key, list(self.shards))
            if name not in self.shards:
                raise ShardError(f"{key} is in shard {name!r}, which {self.manifest.path} no longer lists")
            plan.setdefault(name, []).append(str(video))
            order.append((key, name))
        self.order.add(order)
        summary = IngestSummary(files=list(problems))
        for p in problems:
            log.error("%s: %s", p.path, p.reason)
        for reply in self._ingest_plan(plan, options):
            summary.files += reply.files
            summary.missing += reply.missing
        summary.wall_s = time.perf_counter() - start
        return summary

    def _ingest_plan(self, plan: dict[str, list[str]], options: dict) -> Iterator[IngestSummary]:
        """Each shard's ingest, waited for as long as it takes; its errors as they are (a held lock
        stays an :class:`~vidconcept.errors.IndexLockedError`)."""
        if plan and self.serve == "local":
            self._share_model()
        if self.serve == "ray":
            calls = [self._clients[n].call("ingest", files, options) for n, files in plan.items()]
        else:
            calls = (self._clients[n].call("ingest", files, options) for n, files in plan.items())
        for call in calls:  # local: the next shard starts when this one is done
            try:
                yield call.result()
            except Exception as exc:  # noqa: BLE001 - unwrapped from Ray
                raise _cause(exc) from None


    def _share_model(self) -> None:
        """Shards served in this process use one loaded model, not one copy each."""
        servers = [client.server.result() for client in self._clients.values()]
        for server in servers[1:]:
            server.index.use_model(servers[0].index.model)


def _check_page(top: int, offset: int) -> None:
    if not isinstance(top, int) or top < 1 or top > MAX_TOP:
        raise UsageError(f"top must be a whole number from 1 to {MAX_TOP}, not {top!r}")
    if not isinstance(offset, int) or offset < 0:
        raise UsageError(f"offset must be a whole number >= 0, not {offset!r}")

"""The web app's view of one index, shared by every request.

Why a wrapper around :class:`~vidconcept.api.Index`: an ``Index`` holds one SQLite connection
and one FAISS copy, which two threads cannot use at once. So requests read through a small pool
of reader indexes (each its own connection: SQLite's WAL lets them read while a writer writes,
and :meth:`~vidconcept.api.Index.snapshot` keeps each page on one committed state, so no reader
sees a half-written change), and writes (labels, concepts) go through one writer index, one at a
time. A page also needs more than the Python API returns (URLs, a video filter, files checked
against the index), which belongs here, not in the library.

Under load (docs/web.md, "Under load"): answers that only change when the index does are kept
for the current generation of the database (:mod:`.cache`): result pages as their JSON bytes,
keyframes as their bytes, video paths. The event loop answers from these without a thread; a
miss is computed in a worker thread. Searches and similar-shot queries hold one of ``readers``
slots of :attr:`Library.limiter` (they wait as tasks, not as blocked threads), and file lookups
use their own reader index, so a keyframe never queues behind a search.
"""
from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import NamedTuple

import anyio
import numpy as np

from ..api import Index, SearchResults
from .cache import Flights, Generation, GenerationCache
from .schemas import Result, ResultPage, Shot, video_url

#: Concept scores listed by ``/api/shots/{id}``: a 1000-class model stores hundreds per shot.
SHOT_DETAIL_CONCEPTS = 30
#: Reader indexes: at least 4, so keyframe and video lookups rarely queue behind searches; each
#: loads its own FAISS copy on its first similarity query, hence at most 8.
READERS = max(4, min(8, os.cpu_count() or 4))
#: Memory for answers of the current generation: result pages (JSON) and keyframes (JPEG bytes).
PAGE_CACHE_BYTES = 32 * 2**20
FILE_CACHE_BYTES = 64 * 2**20
#: Keyframes larger than this are read for each request rather than kept (ingest writes small JPEGs).
MAX_CACHED_KEYFRAME = 2 * 2**20

ShotId = int
VideoId = int


class NotFound(LookupError):
    """A shot, video or file id that the index does not know (HTTP 404)."""


class Library:
    """Thread-safe, page-shaped access to an :class:`Index`: many readers, one writer."""

    def __init__(self, index: Index, readers: int = READERS):
        self.index = index  # the writer
        self.root = index.root.resolve()
        self._write_lock = threading.Lock()
        self._model_lock = threading.Lock()  # one image embedding at a time: the model is shared
        self._model_ready = False
        self._readers: queue.Queue[Index] = queue.Queue()
        self._all = [Index(index.root, model=index.model_dir) for _ in range(readers)]
        for reader in self._all:
            reader.rebuild_columns_in_background()
            self._readers.put(reader)
        self.readers = readers
        self._files = Index(index.root, model=index.model_dir)  # keyframe and video lookups: never behind a search
        self._files_lock = threading.Lock()
        self.generation = Generation(self.root)
        self.pages = GenerationCache(max_items=2048, max_bytes=PAGE_CACHE_BYTES)
        self.file_cache = GenerationCache(max_items=8192, max_bytes=FILE_CACHE_BYTES)
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        self._flights = Flights()

    def limiter(self, kind: str) -> anyio.CapacityLimiter:
        """Worker-thread slots: ``"read"`` (searches, one per reader index) and ``"files"`` (lookups)."""
        if kind not in self._limiters:
            self._limiters[kind] = anyio.CapacityLimiter(self.readers if kind == "read" else 2)
        return self._limiters[kind]

    async def run(self, kind: str, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)`` in a worker thread, holding one of ``kind``'s slots."""
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=self.limiter(kind))

    async def cached_page(self, key: Hashable, fn: Callable, *args) -> bytes:
        """The JSON of a result page: the current generation's copy, else ``fn(*args)`` in a reader thread
        (one at a time per page: :class:`~.cache.Flights`)."""
        generation = self.generation.current()  # on the event loop only: worker threads are given it
        body = self.pages.get(generation, key)
        if body is None:
            body = await self._flights.run((generation, key), lambda: self.pages.get(generation, key),
                                           lambda: self.run("read", self._page_json, generation, key, fn, *args))
        return body

    def _page_json(self, generation: int, key: Hashable, fn: Callable, *args) -> bytes:
        """``fn(*args)`` as JSON, kept under ``generation``, read before the snapshot ``fn`` takes (so the
        answer is of that state or a newer one, never an older one)."""
        body = ResultPage.model_validate(fn(*args)).model_dump_json().encode()
        self.pages.put(generation, key, body, size=len(body))
        return body

    @contextmanager
    def locked(self) -> Iterator[Index]:
        """The writer index, for one change at a time (readers go on meanwhile)."""
        with self._write_lock:
            yield self.index

    @contextmanager
    def reading(self) -> Iterator[Index]:
        """A reader index for one request, inside one snapshot of the database."""
        reader = self._readers.get()
        try:
            with reader.snapshot():
                yield reader
        finally:
            self._readers.put(reader)

    def close(self) -> None:
        with self.locked() as index:
            index.close()
        for reader in self._all:
            reader.close()
        with self._files_lock:
            self._files.close()
        self.generation.close()

    def load_model(self) -> None:
        """Load the concept model now, so the first image query does not wait for it; readers share it."""
        with self.locked() as index:
            model = index.model
        for reader in self._all:
            reader.use_model(model)
        self._model_ready = True

    # ---- queries ------------------------------------------------------------
    def search(self, query: str, top: int, min_score: float, offset: int, video: VideoId | None) -> dict:
        with self.reading() as index:
            if video is not None and index.video(video) is None:
                raise NotFound(f"no video with id {video} in this index (see /api/videos)")
            return self.page(index, index.search(query, top=top, min_score=min_score, offset=offset, video=video))

    def similar_shot(self, shot: ShotId, top: int) -> dict:
        with self.reading() as index:
            if index.shot(shot, concepts=0) is None:
                raise NotFound(f"no shot with id {shot} in this index")
            return self.page(index, index.similar(shot=shot, top=top))

    def similar_image(self, image: np.ndarray, top: int) -> dict:
        with self._model_lock:
            if not self._model_ready:
                self.load_model()
            with self.reading() as index:
                return self.page(index, index.similar(image=image, top=top))

    def page(self, index: Index, found: SearchResults) -> dict:
        return {"results": [Result.from_record(r).model_dump() for r in found.results], "total": found.total}

    def search_json(self, query: str, top: int, min_score: float, offset: int, video: VideoId | None) -> Awaitable:
        """:meth:`search` as JSON bytes, from the cache of the current generation when it has it."""
        return self.cached_page(("search", query, top, min_score, offset, video), self.search,
                                query, top, min_score, offset, video)

    def similar_shot_json(self, shot: ShotId, top: int) -> Awaitable:
        return self.cached_page(("similar", shot, top), self.similar_shot, shot, top)

    # ---- records ----------------------------------------------------------
    def concepts(self, min_score: float) -> list[dict]:
        with self.reading() as index:
            return index.concepts(min_score=min_score)

    def videos(self) -> list[dict]:
        with self.reading() as index:
            return [_video(v) for v in index.videos()]

    def stats(self) -> dict:
        with self.reading() as index:
            return index.info()

    def shot(self, shot: ShotId) -> dict:
        with self.reading() as index:
            found = index.shot(shot, concepts=SHOT_DETAIL_CONCEPTS)
        if found is None:
            raise NotFound(f"no shot with id {shot} in this index")
        hit, scores = found
        return Shot.from_record(hit, scores=scores).model_dump()

    # ---- files ------------------------------------------------------------
    @contextmanager
    def _file_reader(self) -> Iterator[Index]:
        with self._files_lock, self._files.snapshot() as index:
            yield index

    def keyframe_file(self, shot: ShotId) -> Path:
        """The keyframe JPEG of a shot; only paths inside the index folder are served."""
        with self._file_reader() as index:
            path = index.keyframe_path(shot)
        if path is None:
            raise NotFound(f"no keyframe for shot {shot} in {self.root} (missing? re-run ingest)")
        return path

    def cached_keyframe(self, shot: ShotId, generation: int | None = None) -> Keyframe | None:
        """The current generation's copy of a shot's keyframe, if the server has it (no I/O)."""
        return self.file_cache.get(self.generation.current() if generation is None else generation, ("keyframe", shot))

    async def keyframe(self, shot: ShotId) -> Keyframe:
        """:meth:`cached_keyframe`, else :meth:`load_keyframe` in a file-lookup thread (one per shot at a time)."""
        generation = self.generation.current()
        return self.cached_keyframe(shot, generation) or await self._flights.run(
            ("keyframe", shot), lambda: self.cached_keyframe(shot),
            lambda: self.run("files", self.load_keyframe, shot, generation))

    async def video_path(self, video: VideoId) -> Path:
        """The file of an indexed video (:meth:`video_file`), remembered for the current generation."""
        generation = self.generation.current()
        return self.file_cache.get(generation, ("video", video)) or await self._flights.run(
            ("video", video), lambda: self.file_cache.get(self.generation.current(), ("video", video)),
            lambda: self.run("files", self.video_file, video, generation))

    def load_keyframe(self, shot: ShotId, generation: int | None = None) -> Keyframe:
        """A shot's keyframe (bytes and a strong ETag), read now and kept for ``generation`` (read before)."""
        path = self.keyframe_file(shot)
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read(MAX_CACHED_KEYFRAME + 1)
            if len(data) > MAX_CACHED_KEYFRAME:
                data += f.read()
        found = Keyframe(data, _etag(path, st))
        if len(data) <= MAX_CACHED_KEYFRAME and generation is not None:
            self.file_cache.put(generation, ("keyframe", shot), found, size=len(data) + 200)
        return found

    def video_file(self, video: VideoId, generation: int | None = None) -> Path:
        """The file of an indexed video: only videos the index knows, by id, are served (kept for
        ``generation``, read before, if given)."""
        with self._file_reader() as index:
            row = index.video(video)
        if row is None or row.get("status") != "indexed":
            raise NotFound(f"no indexed video with id {video} (see /api/videos)")
        path = Path(row["path"])
        if not path.is_file():
            raise NotFound(f"{path} was moved or deleted since it was indexed; re-run ingest")
        if generation is not None:
            self.file_cache.put(generation, ("video", video), path, size=len(str(path)) + 100)
        return path


class Keyframe(NamedTuple):
    data: bytes
    etag: str


def _etag(path: Path, st: os.stat_result) -> str:
    """Strong: keyframe folders are per (video path, content), and a rewritten file changes size or time."""
    return '"' + hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32] + '"'


def _video(row: dict) -> dict:
    fields = ("id", "path", "status", "duration_s", "fps", "width", "height")
    return {k: row.get(k) for k in fields} | {"name": Path(row["path"]).name, "video_url": video_url(row["id"])}

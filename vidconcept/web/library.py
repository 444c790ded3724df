"""The web app's view of one index, shared by every request.

Why a wrapper around :class:`~vidconcept.api.Index`: an ``Index`` holds one SQLite connection
and one FAISS copy, which two threads cannot use at once. So requests read through a small pool
of reader indexes (each its own connection: SQLite's WAL lets them read while a writer writes,
and :meth:`~vidconcept.api.Index.snapshot` keeps each page on one committed state, so no reader
sees a half-written change), and writes (labels, concepts) go through one writer index, one at a
time. A page also needs more than the Python API returns (URLs, a video filter, files checked
against the index), which belongs here, not in the library.
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..api import Index, SearchResults
from .schemas import Result, Shot, video_url

#: Concept scores listed by ``/api/shots/{id}``: a 1000-class model stores hundreds per shot.
SHOT_DETAIL_CONCEPTS = 30
#: Reader indexes: at least 4, so keyframe and video lookups rarely queue behind searches; each
#: loads its own FAISS copy on its first similarity query, hence at most 8.
READERS = max(4, min(8, os.cpu_count() or 4))

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
    def keyframe_file(self, shot: ShotId) -> Path:
        """The keyframe JPEG of a shot; only paths inside the index folder are served."""
        with self.reading() as index:
            path = index.keyframe_path(shot)
        if path is None:
            raise NotFound(f"no keyframe for shot {shot} in {self.root} (missing? re-run ingest)")
        return path

    def video_file(self, video: VideoId) -> Path:
        """The file of an indexed video: only videos the index knows, by id, are served."""
        with self.reading() as index:
            row = index.video(video)
        if row is None or row.get("status") != "indexed":
            raise NotFound(f"no indexed video with id {video} (see /api/videos)")
        path = Path(row["path"])
        if not path.is_file():
            raise NotFound(f"{path} was moved or deleted since it was indexed; re-run ingest")
        return path


def _video(row: dict) -> dict:
    fields = ("id", "path", "status", "duration_s", "fps", "width", "height")
    return {k: row.get(k) for k in fields} | {"name": Path(row["path"]).name, "video_url": video_url(row["id"])}

"""The web app's view of one index, shared by every request.

Why a wrapper around :class:`~vidconcept.api.Index`: the index's SQLite connection
and FAISS file are shared by the server's worker threads, so each call holds one
lock; and a page needs more than the Python API returns (URLs, a video
filter, file paths checked against the index), which belongs here, not in the library.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..api import Index, SearchResults
from .schemas import Result, Shot, video_url

#: Concept scores listed by ``/api/shots/{id}``: a 1000-class model stores hundreds per shot.
SHOT_DETAIL_CONCEPTS = 30

ShotId = int
VideoId = int


class NotFound(LookupError):
    """A shot, video or file id that the index does not know (HTTP 404)."""


class Library:
    """Thread-safe, page-shaped access to an :class:`Index`."""

    def __init__(self, index: Index):
        self.index = index
        self.root = index.root.resolve()
        self._lock = threading.Lock()

    @contextmanager
    def locked(self) -> Iterator[Index]:
        with self._lock:
            yield self.index

    def close(self) -> None:
        with self.locked() as index:
            index.close()

    def load_model(self) -> None:
        """Load the concept model now, so the first image query does not wait for it."""
        with self.locked() as index:
            index.model  # noqa: B018 (the property loads and caches it)

    # ---- queries ------------------------------------------------------------
    def search(self, query: str, top: int, min_score: float, offset: int, video: VideoId | None) -> dict:
        with self.locked() as index:
            if video is not None and index.store.video(video) is None:
                raise NotFound(f"no video with id {video} in this index (see /api/videos)")
            return self.page(index, index.search(query, top=top, min_score=min_score, offset=offset, video=video))

    def similar_shot(self, shot: ShotId, top: int) -> dict:
        with self.locked() as index:
            if not index.store.shots([shot]):
                raise NotFound(f"no shot with id {shot} in this index")
            return self.page(index, index.similar(shot=shot, top=top))

    def similar_image(self, image: np.ndarray, top: int) -> dict:
        with self.locked() as index:
            return self.page(index, index.similar(image=image, top=top))

    def page(self, index: Index, found: SearchResults) -> dict:
        return {"results": [Result.from_record(r).model_dump() for r in found.results], "total": found.total}

    # ---- records ----------------------------------------------------------
    def concepts(self, min_score: float) -> list[dict]:
        with self.locked() as index:
            return index.concepts(min_score=min_score)

    def videos(self) -> list[dict]:
        with self.locked() as index:
            return [_video(v) for v in index.videos()]

    def stats(self) -> dict:
        with self.locked() as index:
            return index.info()

    def shot(self, shot: ShotId) -> dict:
        with self.locked() as index:
            found = index.results_for([(shot, 1.0)])
            if not found:
                raise NotFound(f"no shot with id {shot} in this index")
            scores = index.store.top_concepts(shot, SHOT_DETAIL_CONCEPTS)
        best = max(scores.values(), default=0.0)  # a shot alone has no query score: its top concept's
        return Shot.from_record(found[0], score=best, scores=scores).model_dump()

    # ---- files ------------------------------------------------------------
    def keyframe_file(self, shot: ShotId) -> Path:
        """The keyframe JPEG of a shot; only paths inside the index folder are served."""
        with self.locked() as index:
            row = index.store.shots([shot]).get(shot)
        if row is None or not row["keyframe"]:
            raise NotFound(f"no keyframe for shot {shot} in this index")
        path = (self.root / row["keyframe"]).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise NotFound(f"keyframe of shot {shot} is missing from {self.root}; re-run ingest")
        return path

    def video_file(self, video: VideoId) -> Path:
        """The file of an indexed video: only videos the index knows, by id, are served."""
        with self.locked() as index:
            row = index.store.video(video)
        if row is None or row.get("status") != "indexed":
            raise NotFound(f"no indexed video with id {video} (see /api/videos)")
        path = Path(row["path"])
        if not path.is_file():
            raise NotFound(f"{path} was moved or deleted since it was indexed; re-run ingest")
        return path


def _video(row: dict) -> dict:
    fields = ("id", "path", "status", "duration_s", "fps", "width", "height")
    return {k: row.get(k) for k in fields} | {"name": Path(row["path"]).name, "video_url": video_url(row["id"])}

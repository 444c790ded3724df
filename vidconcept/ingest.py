"""Ingest: video → shots → keyframes → concept model → index, idempotent per video.

Each video is decoded once (:class:`~vidconcept.video.ShotScanner` yields every
shot with its keyframe as soon as the shot ends); keyframes are batched through the
concept model on the main thread while a producer thread keeps decoding, and the
video is committed to the database in one transaction. An unchanged file (same
size and mtime, or same content hash) is skipped, a changed one re-indexed, and a
file that fails is recorded with its reason while the rest go on.
"""
from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import config
from .errors import UsageError, VidconceptError, VideoError
from .index.store import ShotData, Store
from .index.vectors import VectorIndex

log = logging.getLogger(__name__)

HASH_CHUNK = 1 << 20


@dataclass
class FileOutcome:
    """What happened to one input file."""

    path: str
    status: str  # indexed | unchanged | failed
    shots: int = 0
    seconds: float = 0.0
    reason: str | None = None


@dataclass
class IngestSummary:
    """Totals printed at the end of an ingest (``--json`` prints :meth:`to_dict`)."""

    files: list[FileOutcome] = field(default_factory=list)
    wall_s: float = 0.0

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "failed"]

    def to_dict(self) -> dict:
        seconds = sum(f.seconds for f in self.files if f.status == "indexed")
        return {
            "videos": self.count("indexed"),
            "unchanged": self.count("unchanged"),
            "failed": [{"path": f.path, "reason": f.reason} for f in self.failed],
            "shots": sum(f.shots for f in self.files if f.status == "indexed"),
            "video_seconds": round(seconds, 3),
            "wall_s": round(self.wall_s, 3),
            "realtime_factor": round(seconds / self.wall_s, 2) if self.wall_s > 0 and seconds else None,
        }


def discover(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[FileOutcome]]:
    """Expand files and folders (recursively, by video extension) into video paths.

    Files named explicitly are taken whatever their extension (they fail later
    with a clear reason if they are not videos); missing paths are reported.
    """
    videos: list[Path] = []
    problems: list[FileOutcome] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.suffix.lower() in config.VIDEO_EXTENSIONS and not f.name.startswith(".")
            )
            if not found:
                log.warning("%s: no video files found (extensions: %s)", p, ", ".join(sorted(config.VIDEO_EXTENSIONS)))
            videos.extend(found)
        elif p.exists():
            videos.append(p)
        else:
            problems.append(FileOutcome(str(p), "failed", reason="no such file or folder"))
    seen: set[Path] = set()
    unique = []
    for v in videos:
        key = v.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(v)
    return unique, problems


def content_hash(path: Path) -> str:
    """BLAKE2b of the whole file: a renamed or touched file is still recognised."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def model_fingerprint(model) -> dict:
    digest = hashlib.sha1("\n".join(model.concepts).encode()).hexdigest()[:16]
    return {"name": model.name, "concepts": len(model.concepts), "concepts_sha1": digest, "feature_dim": model.feature_dim}


class Ingestor:
    """Ingests videos into one index with one concept model (loaded on first need)."""

    def __init__(
        self,
        store: Store,
        model_loader: Callable[[], object],
        *,
        detector: str | None = None,
        threshold: float | None = None,
        min_shot_s: float | None = None,
        batch_size: int = 32,
        progress: bool = True,
    ):
        self.store = store
        self._model_loader = model_loader
        self._model = None
        self.scan_options = {"detector": detector, "threshold": threshold, "min_shot_s": min_shot_s}
        self.batch_size = batch_size
        self.progress = progress
        self.vectors: VectorIndex | None = None
        self._dirty_vectors = False

    # ---- model ------------------------------------------------------------
    @property
    def model(self):
        if self._model is None:
            self._model = self._model_loader()
            self._check_model(self._model)
        return self._model

    def _check_model(self, model) -> None:
        fp = model_fingerprint(model)
        known = self.store.get_meta("model")
        if known and known["concepts_sha1"] != fp["concepts_sha1"]:
            raise UsageError(
                f"{self.store.root}: index was built with model {known['name']!r} ({known['concepts']} concepts); "
                f"model {fp['name']!r} has other concepts: use another --index folder"
            )
        if not known:
            with self.store.db.atomic():
                self.store.set_meta("model", fp)
                self.store.set_meta("feature_dim", fp["feature_dim"])
                self.store.ensure_concepts(model.concepts, source="model")

    # ---- run --------------------------------------------------------------
    def run(self, paths: Sequence[str | os.PathLike]) -> IngestSummary:
        from .index.vectors import open_vectors

        start = time.perf_counter()
        summary = IngestSummary()
        self.vectors = open_vectors(self.store, None)  # heals a stale or corrupt FAISS file
        videos, problems = discover(paths)
        summary.files.extend(problems)
        for p in problems:
            log.error("%s: %s", p.path, p.reason)
        bar = _bar(total=len(videos), desc="videos", unit="video", disable=not self.progress, position=0)
        try:
            for path in videos:
                outcome = self.ingest_file(path)
                summary.files.append(outcome)
                bar.update(1)
        finally:
            bar.close()
            if self._dirty_vectors and self.vectors is not None:
                from .index.vectors import FAISS_NAME

                self.vectors.save(self.store.root / FAISS_NAME, self.store.feature_digest())
        summary.wall_s = time.perf_counter() - start
        return summary

    def ingest_file(self, path: Path) -> FileOutcome:
        key = str(path.resolve())
        try:
            stat = path.stat()
            if not path.is_file():
                raise VideoError(f"{path}: not a regular file")
            old = self.store.video_by_path(key)
            if old and old["status"] == "indexed" and old["size"] == stat.st_size and old["mtime"] == stat.st_mtime:
                return FileOutcome(str(path), "unchanged", seconds=old["duration_s"] or 0.0)
            digest = content_hash(path)
            if old and old["status"] == "indexed" and old["content_hash"] == digest:
                self.store.touch_video(old["id"], mtime=stat.st_mtime, size=stat.st_size)
                return FileOutcome(str(path), "unchanged", seconds=old["duration_s"] or 0.0)
            return self._index_video(path, key, digest, stat)
        except UsageError:
            raise
        except (VidconceptError, OSError) as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            log.error("%s: %s", path, reason)
            self.store.mark_video(key, "failed", reason)
            return FileOutcome(str(path), "failed", reason=reason)

    def _index_video(self, path: Path, key: str, digest: str, stat: os.stat_result) -> FileOutcome:
        from .video import ShotScanner, save_keyframe

        bar = _bar(desc=path.name[:30], unit="frame", leave=False, disable=not self.progress, position=1)
        try:
            # Open the video before loading the model: a bad file fails fast.
            scanner = ShotScanner(path, keyframes=True, progress=bar.update, **self.scan_options)
            model = self.model
        except BaseException:
            bar.close()
            raise
        info = scanner.info
        bar.total = info.frames or None
        kf_dir = Path("keyframes") / digest[:16]
        (self.store.root / kf_dir).mkdir(parents=True, exist_ok=True)
        shots: list[ShotData] = []
        scores, features = [], []
        batch: list[np.ndarray] = []

        def flush() -> None:
            if batch:
                pred = model.predict(batch, batch_size=self.batch_size)
                scores.append(pred.scores)
                features.append(pred.features)
                batch.clear()

        try:
            for shot, keyframe in _prefetch(scanner):
                rel = kf_dir / f"{shot.index:05d}.jpg"
                save_keyframe(keyframe, self.store.root / rel)
                shots.append(ShotData(shot.index, shot.start_frame, shot.end_frame, shot.start_s, shot.end_s, str(rel)))
                batch.append(keyframe)
                if len(batch) >= self.batch_size:
                    flush()
            flush()
        finally:
            bar.close()
        if not shots:
            raise VideoError(f"{path}: no frames could be decoded")
        info = scanner.info
        score_mat = np.concatenate(scores) if scores else np.empty((0, len(model.concepts)), np.float32)
        feat_mat = np.concatenate(features) if features else np.empty((0, model.feature_dim), np.float32)
        video = {
            "path": key, "content_hash": digest, "size": stat.st_size, "mtime": stat.st_mtime,
            "duration_s": info.duration_s, "fps": info.fps, "frames": info.frames,
            "width": info.width, "height": info.height, "model": model.name,
        }
        cids = self.store.ensure_concepts(model.concepts)
        _, shot_ids = self.store.replace_video(video, shots, score_mat, [cids[c] for c in model.concepts], feat_mat)
        self._update_vectors(shot_ids, feat_mat, self.store.last_removed)
        return FileOutcome(str(path), "indexed", shots=len(shots), seconds=info.duration_s)

    def _update_vectors(self, ids: list[int], features: np.ndarray, removed: list[int]) -> None:
        if self.vectors is None:
            # A fresh index: build from what is committed (this video included).
            self.vectors = VectorIndex.build(self.store, features.shape[1])
        else:
            self.vectors.remove(removed)
            self.vectors.add(np.asarray(ids), features)
        self._dirty_vectors = True


def _prefetch(scanner: Iterable) -> Iterator[tuple]:
    """Run the decoder in a producer thread so decoding overlaps model inference.

    PyAV and OpenCV release the GIL while decoding and resizing, and torch while
    computing, so two threads keep both cores busy.
    """
    q: queue.Queue = queue.Queue(maxsize=64)
    done = object()

    def produce() -> None:
        try:
            for item in scanner:
                q.put(item)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)
            return
        q.put(done)

    thread = threading.Thread(target=produce, name="vidconcept-decode", daemon=True)
    thread.start()
    while True:
        item = q.get()
        if item is done:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()


def _bar(**kw):
    from tqdm.auto import tqdm

    return tqdm(dynamic_ncols=True, **kw)


def to_jsonable(outcome: FileOutcome) -> dict:
    return asdict(outcome)

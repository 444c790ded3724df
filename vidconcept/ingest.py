"""Ingest: video → shots → keyframes → concept model → index, idempotent per video.

The :class:`Ingestor` is the one writer of an index. It plans each file (an
unchanged file, same size and mtime or same content hash, is skipped; a growing
one waits for the next run), hands the rest as :class:`~vidconcept.engines.base.VideoJob` items to the
engine it is given (a factory from :mod:`vidconcept.engines`: ``local`` or ``ray``;
the contract is :mod:`vidconcept.engines.base`) that decodes each video once, writes
its keyframes and scores them, and commits each
:class:`~vidconcept.engines.base.VideoResult` in one transaction. A file that fails is recorded with its
reason while the rest go on.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import config
from .engines.base import EngineFactory, FileOutcome, VideoJob, VideoResult, failure, progress_bar
from .errors import UsageError, VidconceptError, VideoError
from .index.store import Store, now_iso
from .index.user_concepts import follow_labels
from .index.vectors import VectorIndex
from .model.identity import bundle_identity, model_identity

log = logging.getLogger(__name__)

HASH_CHUNK = 1 << 20
#: A file modified less than this many seconds ago is watched that long for growth.
SETTLE_S = 1.0


@dataclass
class IngestSummary:
    """Totals printed at the end of an ingest (``--json`` prints :meth:`to_dict`)."""

    files: list[FileOutcome] = field(default_factory=list)
    wall_s: float = 0.0
    missing: int = 0  # indexed videos under the given folders whose files are gone

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
            "skipped": [{"path": f.path, "reason": f.reason} for f in self.files if f.status == "skipped"],
            "missing": self.missing,
            "failed": [{"path": f.path, "reason": f.reason} for f in self.failed],
            "shots": sum(f.shots for f in self.files if f.status == "indexed"),
            "shots_kept": sum(f.shots_kept for f in self.files),
            "labels_moved": sum(f.labels_moved for f in self.files),
            "labels_lost": [x for f in self.files for x in f.labels_lost],
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
            # Folders named like videos are kept: they fail with "not a regular file".
            found = sorted(
                f for f in _walk(p) if f.suffix.lower() in config.VIDEO_EXTENSIONS and not f.name.startswith(".")
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


def growing_files(paths: Iterable[Path]) -> set[Path]:
    """Files still being written: modified within SETTLE_S and changing size or
    mtime while we wait that long (one wait for all of them, not one per file)."""
    def signature(p: Path):
        try:
            st = p.stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime

    now = time.time()
    recent = {p: sig for p in paths if (sig := signature(p)) and now - sig[1] < SETTLE_S}
    if not recent:
        return set()
    time.sleep(SETTLE_S)
    return {p for p, sig in recent.items() if signature(p) != sig}


def _walk(folder: Path) -> Iterator[Path]:
    """Every entry below ``folder``; unreadable sub-folders are logged, not fatal."""
    for dirpath, dirnames, filenames in os.walk(folder, onerror=lambda e: log.error("%s: %s", e.filename, e.strerror)):
        base = Path(dirpath)
        dirnames.sort()
        yield from (base / d for d in dirnames)
        yield from (base / f for f in filenames)


def content_hash(path: Path) -> str:
    """BLAKE2b of the whole file: a renamed or touched file is still recognised."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def bundle_digest(model) -> str | None:
    """The ``bundle_sha1`` of a loaded model (:mod:`vidconcept.model.identity`); ``None`` without a bundle folder."""
    return model_identity(model).get("bundle_sha1")


def model_version(model) -> dict:
    """What the index records of the model that scored it (``meta.model``): :func:`~vidconcept.model.identity.model_identity`."""
    return model_identity(model)


def bundle_version(folder: str | os.PathLike) -> dict:
    """A bundle folder's identity without loading its network (:func:`~vidconcept.model.identity.bundle_identity`)."""
    return bundle_identity(folder)


def same_version(indexed: dict | None, model: dict) -> bool:
    """Whether ``model`` (:func:`model_version` or :func:`bundle_version`) is the version the index holds."""
    if not indexed:
        return False
    return indexed["concepts_sha1"] == model["concepts_sha1"] and \
        indexed.get("bundle_sha1") in (None, model.get("bundle_sha1")) and \
        indexed.get("feature_dim", model.get("feature_dim")) == model.get("feature_dim", indexed.get("feature_dim"))


class Ingestor:
    """Ingests videos into one index with one concept model (loaded on first need).

    ``engine`` builds the engine when there is work (called with ``model``, ``scan_options``,
    ``batch_size`` and ``progress``): :meth:`vidconcept.api.Index.ingest` passes one from
    :func:`vidconcept.engines.create_engine`, so the ingest never chooses an engine itself.
    """

    def __init__(
        self,
        store: Store,
        model_loader: Callable[[], object],
        engine: EngineFactory,
        *,
        detector: str | None = None,
        threshold: float | None = None,
        min_shot_s: float | None = None,
        batch_size: int = 32,
        progress: bool = True,
        log_json: Path | None = None,
    ):
        self.store = store
        self._model_loader = model_loader
        self._model = None
        self.scan_options = {"detector": detector, "threshold": threshold, "min_shot_s": min_shot_s}
        self.batch_size = batch_size
        self.progress = progress
        self.log_json = log_json
        self.engine_factory = engine
        self.vectors: VectorIndex | None = None
        self.user_detectors: list = []
        self._dirty_vectors = False
        self.columns = None  # an index.columns.Update while run() runs

    # ---- model ------------------------------------------------------------
    @property
    def model(self):
        if self._model is None:
            self._model = self._model_loader()
            self._check_model(self._model)
        return self._model

    def _check_model(self, model) -> None:
        """One model version per index: another one is an error that names ``vidconcept upgrade``."""
        version, known = model_version(model), self.store.get_meta("model")
        root, bundle = self.store.root, getattr(model, "bundle_dir", None) or "BUNDLE"
        self._check_no_upgrade()
        if known and not same_version(known, version):
            what = "other concepts" if known["concepts_sha1"] != version["concepts_sha1"] else \
                "another version (its weights, detectors or preprocessing differ)"
            raise UsageError(
                f"{root}: index was built with model {known['name']!r} ({known['concepts']} concepts, version "
                f"{known.get('bundle_sha1') or '-'}); model {version['name']!r} at {bundle} is {what}, and scores "
                f"of two versions are not comparable: run `vidconcept upgrade --index {root} --model {bundle}` to "
                "move the index to it in place (shots, ids and user concepts are kept), or pass --model with the "
                "bundle the index was built with")
        if known and "backbone_sha1" in version and "backbone_sha1" not in known:
            self.store.set_meta("model", {**known, "backbone_sha1": version["backbone_sha1"]})  # indexed before it was kept
        runtime = getattr(model, "runtime", None)
        if runtime and self.store.get_meta("runtime") != runtime:
            self.store.set_meta("runtime", runtime)  # how the last ingest ran the model: `vidconcept info`
        if not known:
            with self.store.db.atomic():
                self.store.set_meta("model", version)
                self.store.set_meta("feature_dim", version["feature_dim"])
                self.store.set_meta("aliases", dict(getattr(getattr(model, "config", None), "aliases", None) or {}))
                self.store.ensure_concepts(model.concepts, source="model")

    def _check_no_upgrade(self) -> None:
        pending = self.store.get_meta("upgrade")
        if pending:
            root = self.store.root
            raise UsageError(f"{root}: an upgrade to model {pending['to']['name']!r} was started and has not finished: "
                             f"run `vidconcept upgrade --index {root} --model {pending.get('bundle') or 'BUNDLE'}` "
                             "to finish it, then ingest")

    # ---- run --------------------------------------------------------------
    def run(self, paths: Sequence[str | os.PathLike]) -> IngestSummary:
        from .index.user_concepts import user_detectors
        from .index.vectors import FAISS_NAME, open_vectors, right_kind

        from .index.columns import Update

        start = time.perf_counter()
        summary = IngestSummary()
        self._check_no_upgrade()
        self.vectors = open_vectors(self.store, None)  # heals a stale or corrupt FAISS file
        self.columns = Update(self.store)
        self.user_detectors = user_detectors(self.store)
        videos, problems = discover(paths)
        for p in problems:
            self._report(summary, p)
        bar = progress_bar(total=len(videos), desc="videos", unit="video", disable=not self.progress, position=0)
        jobs = []
        growing = growing_files(videos)
        for path in videos:
            planned = self.plan(path, growing=path in growing)
            if isinstance(planned, FileOutcome):
                self._report(summary, planned)
                bar.update(1)
            else:
                jobs.append(planned)
        try:
            if jobs:
                engine = self.engine_factory(model=lambda: self.model, scan_options=self.scan_options,
                                             batch_size=self.batch_size, progress=self.progress)
                for item in engine.run(jobs):
                    self._report(summary, self.write(item))
                    bar.update(1)
        finally:
            bar.close()
            if self._dirty_vectors and self.vectors is not None:
                if right_kind(self.vectors, self.vectors.ntotal):
                    self.vectors.save(self.store.root / FAISS_NAME, self.store.feature_digest())
                else:  # the collection outgrew exact search: rebuild as IVF (saved by open_vectors)
                    self.vectors = open_vectors(self.store, None, rebuild=True)
            try:
                self.columns.finish()
            except (OSError, ValueError) as exc:  # searches rank through SQLite and rebuild it later
                log.warning("%s: could not update the column store: %s", self.store.root, exc)
        summary.missing = self.mark_missing([Path(p) for p in paths if Path(p).is_dir()])
        summary.wall_s = time.perf_counter() - start
        return summary

    def _report(self, summary: IngestSummary, outcome: FileOutcome) -> None:
        summary.files.append(outcome)
        if outcome.status == "failed":
            log.error("%s: %s", outcome.path, outcome.reason)
        elif outcome.status == "skipped":
            log.warning("%s: skipped: %s", outcome.path, outcome.reason)
        if self.log_json is not None:
            line = {"time": now_iso(), **asdict(outcome)}
            with open(self.log_json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")

    def mark_missing(self, folders: list[Path]) -> int:
        """Mark indexed videos under ``folders`` whose files are gone as ``missing``
        (their shots stay searchable until ``prune``); return how many."""
        n = 0
        for folder in folders:
            prefix = str(folder.resolve()) + os.sep
            for row in self.store.videos():
                if row["path"].startswith(prefix) and row["status"] != "missing" and not os.path.exists(row["path"]):
                    self.store.touch_video(row["id"], status="missing")
                    log.warning("%s: file is gone; marked missing (run `vidconcept prune` to drop it)", row["path"])
                    n += 1
        return n

    def plan(self, path: Path, growing: bool = False) -> VideoJob | FileOutcome:
        """Decide what to do with one file: skip it (unchanged, still growing),
        fail it (unreadable), or make a job for an engine."""
        key = str(path.resolve())
        try:
            stat = path.stat()
            if not path.is_file():
                raise VideoError(f"{path}: {'a folder' if path.is_dir() else 'not a regular file'}, not a video file")
            old = self.store.video_by_path(key)
            known = old is not None and old["status"] in ("indexed", "missing")
            if known and (old["size"], old["mtime"]) == (stat.st_size, stat.st_mtime):
                if old["status"] == "missing":
                    self.store.touch_video(old["id"], status="indexed")
                return FileOutcome(str(path), "unchanged", seconds=old["duration_s"] or 0.0)
            if growing:
                return FileOutcome(str(path), "skipped", reason="file is still being written (size changing); next run takes it")
            digest = content_hash(path)
            if known and old["content_hash"] == digest:
                self.store.touch_video(old["id"], mtime=stat.st_mtime, size=stat.st_size, status="indexed")
                return FileOutcome(str(path), "unchanged", seconds=old["duration_s"] or 0.0)
        except (VidconceptError, OSError) as exc:
            return self._failed(path, key, exc)
        # One folder per (path, content): two copies of a file, or an old and a new
        # version of one path, never share or overwrite each other's keyframes.
        kf_dir = f"keyframes/{hashlib.sha1(key.encode()).hexdigest()[:12]}-{digest[:12]}"
        return VideoJob(path, key, digest, stat.st_size, stat.st_mtime, self.store.root, kf_dir)

    def _failed(self, path: Path, key: str, exc: BaseException) -> FileOutcome:
        outcome = failure(path, exc)
        self.store.mark_video(key, "failed", outcome.reason)
        return outcome

    def write(self, item: VideoResult | FileOutcome) -> FileOutcome:
        """Commit one engine result to the index in one transaction (the single writer)."""
        if isinstance(item, FileOutcome):
            self.store.mark_video(str(Path(item.path).resolve()), "failed", item.reason)
            return item
        job, info, model = item.job, item.info, self.model
        if not item.shots:
            return self._failed(job.path, job.key, VideoError(f"{job.path}: no frames could be decoded"))
        try:
            now = job.path.stat()
        except OSError as exc:
            return self._failed(job.path, job.key, exc)
        if (now.st_size, now.st_mtime) != (job.size, job.mtime):
            return FileOutcome(str(job.path), "skipped", reason="file changed while it was read; next run takes it")
        video = {
            "path": job.key, "content_hash": job.digest, "size": job.size, "mtime": job.mtime,
            "duration_s": info.duration_s, "fps": info.fps, "frames": info.frames,
            "width": info.width, "height": info.height, "model": model.name,
        }
        cids = self.store.ensure_concepts(model.concepts)
        scores, concept_ids = self._with_user_concepts(item.scores, item.features, [cids[c] for c in model.concepts])
        old_dirs = self.store.keyframe_dirs(job.key)
        if self.columns is not None:
            self.columns.before_write()
        with self.store.db.atomic():  # the shots and the labels that follow them, together
            written = self.store.replace_video(video, item.shots, scores, concept_ids, item.features, item.norms)
            relabel = follow_labels(self.store, written.reshoot, job.key)
        if self.columns is not None:
            self.columns.wrote(written.shot_ids, scores, concept_ids, written.removed)
        for old in old_dirs - {job.kf_dir}:
            shutil.rmtree(self.store.root / old, ignore_errors=True)
        self._update_vectors(written.shot_ids, item.features, written.removed)
        return FileOutcome(str(job.path), "indexed", shots=len(item.shots), seconds=info.duration_s,
                           shots_kept=len(written.reshoot.kept), labels_moved=relabel.moved,
                           labels_lost=relabel.lost)

    def _with_user_concepts(self, scores: np.ndarray, features: np.ndarray, concept_ids: list[int]):
        """Append the user concepts' scores (their detectors on the features as the
        index stores them, float16), so new shots are searchable by them at once."""
        if not self.user_detectors:
            return scores, concept_ids
        stored = features.astype(np.float16).astype(np.float32)
        extra = [det.predict(stored)[:, None] for _, det in self.user_detectors]
        return np.hstack([scores, *extra]), concept_ids + [cid for cid, _ in self.user_detectors]

    def _update_vectors(self, ids: list[int], features: np.ndarray, removed: list[int]) -> None:
        if self.vectors is None:
            # A fresh index: build from what is committed (this video included).
            self.vectors = VectorIndex.build(self.store, features.shape[1])
        else:
            self.vectors.remove(removed)
            self.vectors.add(np.asarray(ids), features)
        self._dirty_vectors = True



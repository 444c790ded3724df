"""The contract between the ingest and its engines, which both import (and nothing of each other).

The :class:`~vidconcept.ingest.Ingestor`, the one writer of the index, plans a :class:`VideoJob`
per file to (re)index and hands the jobs to an engine it is given. An engine is any object with
``run(jobs) -> Iterator[VideoResult | FileOutcome]``: per job, the shots (keyframes already written
under the index folder) with one row of scores and features per shot, or a failed outcome. Engines
are built by a factory called with ``model`` (a callable returning the loaded, checked model),
``scan_options``, ``workers``, ``batch_size``, ``progress`` and their own options
(:func:`vidconcept.engines.create_engine`).

The functions below are what every engine does with a job and the model: scan a video once,
run the model in batches, split one pass over several videos back per video.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import VideoError
from ..records import Shot


@dataclass
class FileOutcome:
    """What happened to one input file."""

    path: str
    status: str  # indexed | unchanged | failed | skipped (still being written)
    shots: int = 0
    seconds: float = 0.0
    reason: str | None = None
    shots_kept: int = 0  # a changed file: shots whose span (hence id) stayed
    labels_moved: int = 0  # user labels that followed removed shots to new ones
    labels_lost: list[dict] = field(default_factory=list)  # and those that could not (kept in the concept)


@dataclass(frozen=True)
class VideoJob:
    """One video to (re)index, as planned by the writer and handed to an engine."""

    path: Path
    key: str  # resolved absolute path: the videos.path column
    digest: str
    size: int
    mtime: float
    root: Path  # the index folder
    kf_dir: str  # keyframe folder, relative to ``root``


@dataclass
class VideoResult:
    """What an engine returns for one video: its shots (keyframes already written),
    and one row of scores and features per shot (``norms``: the features' lengths
    before normalisation, which let an upgrade rerun the model's head without the network)."""

    job: VideoJob
    info: object  # vidconcept.video.VideoInfo
    shots: list[Shot]
    scores: np.ndarray
    features: np.ndarray
    norms: np.ndarray | None = None


def failure(path: Path, exc: BaseException) -> FileOutcome:
    """The failed outcome for ``path`` with a one-line reason (never a traceback)."""
    reason = str(exc).removeprefix(f"{path}: ")
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror.lower()
    return FileOutcome(str(path), "failed", reason=reason)


class Engine(Protocol):
    """Runs decoding, shot detection and the model for the ingest's jobs."""

    def run(self, jobs: list[VideoJob]) -> Iterator[VideoResult | FileOutcome]: ...


#: Builds an engine for a run: ``factory(model=…, scan_options=…, batch_size=…, progress=…)``.
EngineFactory = Callable[..., Engine]


def model_fingerprint(model) -> dict:
    """Name, concepts and feature size of a loaded model (what a remote worker's copy must match)."""
    from ..model.identity import concepts_sha1

    return {"name": model.name, "concepts": len(model.concepts), "concepts_sha1": concepts_sha1(model.concepts),
            "feature_dim": model.feature_dim}


def default_workers() -> int:
    """Half the cores decode; the rest run the model and the writer."""
    return max(1, (os.cpu_count() or 2) // 2)


def scan_job(job: VideoJob, scan_options: dict, progress=None) -> Iterator[tuple[Shot, np.ndarray]]:
    """Open one video now (a bad file fails here, before anything else is spent on
    it) and return a generator that decodes it once: it detects the shots, writes
    their keyframe JPEGs, yields ``(Shot, keyframe array)`` per shot and
    returns the final ``VideoInfo``."""
    from ..video import ShotScanner

    scanner = ShotScanner(job.path, keyframes=True, progress=progress, **scan_options)
    (job.root / job.kf_dir).mkdir(parents=True, exist_ok=True)
    return _scan_shots(scanner, job)


def _scan_shots(scanner, job: VideoJob):
    from ..video import save_keyframe

    for shot, keyframe in scanner:
        rel = f"{job.kf_dir}/{shot.index:05d}.jpg"
        stored = save_keyframe(keyframe, job.root / rel)  # the model scores the stored pixels
        yield dataclasses.replace(shot, keyframe=rel), stored
    return scanner.info


def scan_whole(job: VideoJob, scan_options: dict):
    """Worker-process entry: the whole video's shots and keyframes, or a failure."""
    try:
        gen = scan_job(job, scan_options)
        shots, frames = [], []
        while True:
            try:
                shot, frame = next(gen)
            except StopIteration as stop:
                return stop.value, shots, frames
            shots.append(shot)
            frames.append(frame)
    except (VideoError, OSError) as exc:
        return failure(job.path, exc)


def split_results(videos: list[tuple[VideoJob, object, list[Shot]]], scores: np.ndarray,
                  features: np.ndarray, norms: np.ndarray) -> Iterator[VideoResult]:
    """Split one model pass over several videos' keyframes back into one result per video."""
    at = 0
    for job, info, shots in videos:
        rows = slice(at, at + len(shots))
        yield VideoResult(job, info, shots, scores[rows], features[rows], norms[rows])
        at += len(shots)


def predict_into(model, batch: list, predictions: list, batch_size: int) -> None:
    """Run the model on ``batch`` (then emptied), appending its :class:`Prediction`."""
    if batch:
        predictions.append(model.predict(batch, batch_size=batch_size))  # on CPU in cache-sized chunks
        batch.clear()


def stack_outputs(model, predictions: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The appended batches as one ``[N, concepts]`` score array, one ``[N, D]`` feature
    array and the ``[N]`` feature norms."""
    if not predictions:
        return (np.empty((0, len(model.concepts)), np.float32), np.empty((0, model.feature_dim), np.float32),
                np.empty(0, np.float32))
    return tuple(np.concatenate([getattr(p, k) for p in predictions]) for k in ("scores", "features", "norms"))


def progress_bar(**kw):
    from tqdm.auto import tqdm

    return tqdm(dynamic_ncols=True, **kw)

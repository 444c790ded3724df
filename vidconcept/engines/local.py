"""The local engine: this machine's cores, and its GPU when present.

With one worker (or one video) a video is decoded in a producer thread while the
main thread runs the model on its keyframes in batches: PyAV, OpenCV and torch
release the GIL, so decoding and inference overlap. With ``workers > 1`` whole
videos are scanned in parallel worker processes (which never import torch) and
the main process batches keyframes across videos through the model.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
import multiprocessing as mp

import numpy as np

from ..errors import VidconceptError
from ..index.store import ShotData
from ..ingest import FileOutcome, VideoJob, VideoResult, failure, progress_bar

log = logging.getLogger(__name__)


def default_workers() -> int:
    """Half the cores decode; the rest run the model and the writer."""
    return max(1, (os.cpu_count() or 2) // 2)


def scan_job(job: VideoJob, scan_options: dict, progress=None, keep: bool = True):
    """Decode one video once: detect its shots, write their keyframe JPEGs, and
    yield ``(ShotData, keyframe array)`` per shot; returns the final ``VideoInfo``."""
    from ..video import ShotScanner, save_keyframe

    scanner = ShotScanner(job.path, keyframes=True, progress=progress, **scan_options)
    (job.root / job.kf_dir).mkdir(parents=True, exist_ok=True)
    for shot, keyframe in scanner:
        rel = f"{job.kf_dir}/{shot.index:05d}.jpg"
        save_keyframe(keyframe, job.root / rel)
        yield ShotData(shot.index, shot.start_frame, shot.end_frame, shot.start_s, shot.end_s, rel), keyframe
    return scanner.info


def _scan_whole(job: VideoJob, scan_options: dict):
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
    except (VidconceptError, OSError) as exc:
        return failure(job.path, exc)


class LocalEngine:
    """Runs scanning and the model on this machine."""

    def __init__(self, model, scan_options: dict | None = None, workers: int | None = None,
                 batch_size: int = 32, progress: bool = False):
        self.model = model
        self.scan_options = scan_options or {}
        self.workers = workers or default_workers()
        self.batch_size = batch_size
        self.progress = progress

    def run(self, jobs: list[VideoJob]) -> Iterator[VideoResult | FileOutcome]:
        if self.workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield self._run_threaded(job)
        else:
            yield from self._run_pool(jobs)

    # ---- one video at a time, decode and model overlapped -------------------
    def _run_threaded(self, job: VideoJob) -> VideoResult | FileOutcome:
        bar = progress_bar(desc=job.path.name[:30], unit="frame", leave=False, disable=not self.progress, position=1)
        model = self.model() if callable(self.model) else self.model
        shots, batch, scores, features = [], [], [], []
        try:
            gen = scan_job(job, self.scan_options, progress=bar.update)
            for shot, frame in _prefetch(gen, box := {}):
                shots.append(shot)
                batch.append(frame)
                if len(batch) >= self.batch_size:
                    _predict(model, batch, scores, features, self.batch_size)
            _predict(model, batch, scores, features, self.batch_size)
        except (VidconceptError, OSError) as exc:
            return failure(job.path, exc)
        finally:
            bar.close()
        return VideoResult(job, box["info"], shots, *_stack(model, scores, features))

    # ---- several videos in worker processes ---------------------------------
    def _run_pool(self, jobs: list[VideoJob]) -> Iterator[VideoResult | FileOutcome]:
        model = self.model() if callable(self.model) else self.model
        pending: list[tuple[VideoJob, object, list, list]] = []
        ctx = mp.get_context("spawn")  # never fork a process that holds torch's threads
        with ProcessPoolExecutor(self.workers, mp_context=ctx) as pool:
            futures: dict[Future, VideoJob] = {pool.submit(_scan_whole, j, self.scan_options): j for j in jobs}
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = futures.pop(fut)
                    try:
                        out = fut.result()
                    except BrokenProcessPool:
                        out = FileOutcome(str(job.path), "failed", reason="decoder process crashed")
                    if isinstance(out, FileOutcome):
                        yield out
                    else:
                        pending.append((job, *out))
                if sum(len(p[3]) for p in pending) >= self.batch_size or not futures:
                    yield from self._score(model, pending)
                    pending = []

    def _score(self, model, pending) -> Iterator[VideoResult]:
        """One model pass over the keyframes of several videos, split back per video."""
        frames = [f for _, _, _, fs in pending for f in fs]
        scores, features = [], []
        _predict(model, frames, scores, features, self.batch_size)
        s, f = _stack(model, scores, features)
        at = 0
        for job, info, shots, fs in pending:
            yield VideoResult(job, info, shots, s[at : at + len(fs)], f[at : at + len(fs)])
            at += len(fs)


def _predict(model, batch: list, scores: list, features: list, batch_size: int) -> None:
    if batch:
        pred = model.predict(batch, batch_size=batch_size)
        scores.append(pred.scores)
        features.append(pred.features)
        batch.clear()


def _stack(model, scores: list, features: list) -> tuple[np.ndarray, np.ndarray]:
    s = np.concatenate(scores) if scores else np.empty((0, len(model.concepts)), np.float32)
    f = np.concatenate(features) if features else np.empty((0, model.feature_dim), np.float32)
    return s, f


def _prefetch(gen, box: dict, depth: int = 64) -> Iterable:
    """Run a scan generator in a producer thread; its return value lands in ``box["info"]``."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            while True:
                try:
                    q.put(next(gen))
                except StopIteration as stop:
                    box["info"] = stop.value
                    break
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

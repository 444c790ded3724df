"""The local engine: this machine's cores, and its GPU when present.

With one worker (or one video) a video is decoded in a producer thread while the
main thread runs the model on its keyframes in batches: PyAV, OpenCV and torch
release the GIL, so decoding and inference overlap. With ``workers > 1`` whole
videos are scanned in parallel worker processes (which never import torch) and
the main process batches keyframes across videos through the model.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
import multiprocessing as mp

import numpy as np

from ..errors import VideoError
from ..index.store import ShotData
from ..ingest import FileOutcome, VideoJob, VideoResult, failure, progress_bar

log = logging.getLogger(__name__)


def default_workers() -> int:
    """Half the cores decode; the rest run the model and the writer."""
    return max(1, (os.cpu_count() or 2) // 2)


def scan_job(job: VideoJob, scan_options: dict, progress=None) -> Iterator[tuple[ShotData, np.ndarray]]:
    """Open one video now (a bad file fails here, before anything else is spent on
    it) and return a generator that decodes it once: it detects the shots, writes
    their keyframe JPEGs, yields ``(ShotData, keyframe array)`` per shot and
    returns the final ``VideoInfo``."""
    from ..video import ShotScanner

    scanner = ShotScanner(job.path, keyframes=True, progress=progress, **scan_options)
    (job.root / job.kf_dir).mkdir(parents=True, exist_ok=True)
    return _scan_shots(scanner, job)


def _scan_shots(scanner, job: VideoJob):
    from ..video import save_keyframe

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
    except (VideoError, OSError) as exc:
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
        shots, batch, scores, features = [], [], [], []
        frames = None
        try:
            frames = _Prefetch(scan_job(job, self.scan_options, progress=bar.update))  # decoding starts ...
            model = self._model()  # ... while the model loads; its errors are not the file's: they propagate
            with _torch_threads(model):
                for shot, frame in frames:
                    shots.append(shot)
                    batch.append(frame)
                    if len(batch) >= self.batch_size:
                        _predict(model, batch, scores, features, self.batch_size)
                _predict(model, batch, scores, features, self.batch_size)
        except (VideoError, OSError) as exc:
            return failure(job.path, exc)
        finally:
            if frames is not None:
                frames.close()
            bar.close()
        return VideoResult(job, frames.info, shots, *_stack(model, scores, features))

    def _model(self):
        return self.model() if callable(self.model) else self.model

    # ---- several videos in worker processes ---------------------------------
    def _run_pool(self, jobs: list[VideoJob]) -> Iterator[VideoResult | FileOutcome]:
        model = self._model()
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
        yield from split_results([(job, info, shots) for job, info, shots, _ in pending], *_stack(model, scores, features))


def split_results(videos: list[tuple[VideoJob, object, list[ShotData]]], scores: np.ndarray,
                  features: np.ndarray) -> Iterator[VideoResult]:
    """Split one model pass over several videos' keyframes back into one result per video."""
    at = 0
    for job, info, shots in videos:
        yield VideoResult(job, info, shots, scores[at : at + len(shots)], features[at : at + len(shots)])
        at += len(shots)


@contextlib.contextmanager
def _torch_threads(model):
    """On CPU, run torch on the cores the decoder thread leaves free: torch's
    intra-op threads spin while waiting, so competing with the decoder for every
    core is several times slower than taking one fewer."""
    import torch

    before = torch.get_num_threads()
    if not str(getattr(model, "device", "cpu")).startswith("cuda"):
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


class _Prefetch:
    """Runs a scan generator in a producer thread from construction on; iterate to
    consume its items; its return value (the ``VideoInfo``) is then ``.info``."""

    def __init__(self, gen, depth: int = 64):
        self.info = None
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._done = object()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(gen,), name="vidconcept-decode", daemon=True)
        self._thread.start()

    def _produce(self, gen) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._put(next(gen))
                except StopIteration as stop:
                    self.info = stop.value
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
            return
        finally:
            gen.close()
        self._put(self._done)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Stop the producer (the consumer gave up early) and wait for it."""
        self._stop.set()
        self._thread.join()

    def __iter__(self) -> Iterator:
        while True:
            item = self._q.get()
            if item is self._done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
        self._thread.join()

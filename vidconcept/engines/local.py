"""The local engine: this machine's cores, and its GPU when present.

With one worker (or one video) the videos are decoded, one after the other, in one
child process that streams each shot's keyframe to this process, which runs the
model on them in batches as they arrive: decoding and inference overlap, and the
model's first load (importing torch and timm, seconds of pure Python) does not
fight the decoder for the GIL as it did when the decoder was a thread (py-spy then
found the main thread 8.6 s inside ``import timm``, against 2.7 s for the whole load
now, and inference started only after decoding). With ``workers > 1`` whole videos are scanned in parallel
worker processes and the main process batches keyframes across videos through the
model. Decoding processes never import torch.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
import multiprocessing as mp

import numpy as np

from ..errors import VideoError
from ..records import Shot
from .base import (FileOutcome, VideoJob, VideoResult, default_workers, failure, predict_into, progress_bar,
                   scan_job, scan_whole, split_results, stack_outputs)

log = logging.getLogger(__name__)


#: Fewest keyframes worth a model call while the decoder is still busy.
_MIN_BATCH = 4


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
            yield from self._run_streamed(jobs)
        else:
            yield from self._run_pool(jobs)

    # ---- one video at a time, decode and model overlapped -------------------
    def _run_streamed(self, jobs: list[VideoJob]) -> Iterator[VideoResult | FileOutcome]:
        with _DecodeProcess(self.scan_options) as decoder:
            for job in jobs:  # queued at once: the next video decodes while this one finishes
                decoder.submit(job)
            for job in jobs:
                yield self._stream_one(decoder, job)

    def _stream_one(self, decoder: "_DecodeProcess", job: VideoJob) -> VideoResult | FileOutcome:
        bar = progress_bar(desc=job.path.name[:30], unit="frame", leave=False, disable=not self.progress, position=1)
        shots, batch, predictions = [], [], []
        items = decoder.results(progress=bar.update)
        try:
            model = self._model()  # loads while the first video decodes; its errors are not the file's
            with _torch_threads(model):
                for shot, frame in items:
                    shots.append(shot)
                    batch.append(frame)
                    # a full batch, or a few keyframes while the decoder has nothing ready:
                    # inference then fills the gaps in decoding instead of piling up at the end
                    if len(batch) >= self.batch_size or (len(batch) >= _MIN_BATCH and decoder.idle()):
                        predict_into(model, batch, predictions, self.batch_size)
                predict_into(model, batch, predictions, self.batch_size)
        except (VideoError, OSError) as exc:
            items.close()  # skip the rest of this video; any other error ends the run without waiting for it
            return failure(job.path, exc)
        finally:
            bar.close()
        return VideoResult(job, items.info, shots, *stack_outputs(model, predictions))

    def _model(self):
        return self.model() if callable(self.model) else self.model

    # ---- several videos in worker processes ---------------------------------
    def _run_pool(self, jobs: list[VideoJob]) -> Iterator[VideoResult | FileOutcome]:
        model = self._model()
        pending: list[tuple[VideoJob, object, list, list]] = []
        ctx = mp.get_context("spawn")  # never fork a process that holds torch's threads
        # torch on the cores the decoders leave (spinning intra-op threads against two decoders on
        # two cores cost 1.5x the CPU of the whole ingest: benchmarks/ingest_speed.py --workers 1 2)
        with ProcessPoolExecutor(self.workers, mp_context=ctx) as pool, _torch_threads(model):
            with _main_module_hidden():  # the workers start on the first submit
                futures: dict[Future, VideoJob] = {pool.submit(scan_whole, j, self.scan_options): j for j in jobs}
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
        predictions: list = []
        predict_into(model, frames, predictions, self.batch_size)
        yield from split_results([(job, info, shots) for job, info, shots, _ in pending], *stack_outputs(model, predictions))


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


class _Stream:
    """One video's ``(Shot, keyframe)`` items from the decode process; ``.info`` is its
    ``VideoInfo`` once they are exhausted. A decoding error is raised from the iteration."""

    def __init__(self, decoder: "_DecodeProcess", progress):
        self._decoder, self._progress = decoder, progress
        self.info = None
        self._finished = False

    def __iter__(self) -> Iterator[tuple[Shot, np.ndarray]]:
        while not self._finished:
            kind, payload = self._decoder.get()
            if kind == "shot":
                yield payload
            elif kind == "progress":
                self._progress(payload)
            elif kind == "done":
                self.info, self._finished = payload, True
            else:  # "error"
                self._finished = True
                raise payload

    def close(self) -> None:
        """Skip what is left of this video, so the next one's items come next."""
        for _ in self:
            pass


class _DecodeProcess:
    """A child process that scans submitted videos in order and streams their items back.

    Spawned (never forked: this process may hold torch's threads). It exits when told to,
    or when this process has gone (a killed ingest leaves no decoder behind).
    """

    def __init__(self, scan_options: dict, depth: int = 16):
        ctx = mp.get_context("spawn")
        self._jobs = ctx.Queue()
        self._items = ctx.Queue(maxsize=depth)
        self._proc = ctx.Process(target=_decode_loop, args=(self._jobs, self._items, scan_options, os.getpid()),
                                 name="vidconcept-decode", daemon=True)
        with _main_module_hidden():
            self._proc.start()

    def submit(self, job: VideoJob) -> None:
        self._jobs.put(job)

    def results(self, progress) -> _Stream:
        """The items of the next submitted video not read yet (videos come back in submission order)."""
        return _Stream(self, progress)

    def idle(self) -> bool:
        """Whether no item is waiting (approximate, as ``Queue.empty``)."""
        return self._items.empty()

    def get(self) -> tuple[str, object]:
        while True:
            try:
                return self._items.get(timeout=1.0)
            except queue.Empty:
                if not self._proc.is_alive():
                    raise VideoError(f"the decoder process died (exit code {self._proc.exitcode})") from None

    def __enter__(self) -> "_DecodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self._jobs.put(None)
        self._proc.join(timeout=0.5 if exc[0] is None else 0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join()
        for q in (self._jobs, self._items):
            q.cancel_join_thread()
            q.close()


@contextlib.contextmanager
def _main_module_hidden():
    """Start a spawned child without it importing this process's ``__main__``.

    A spawned child first re-imports the parent's main script; the decoder needs nothing
    from it, and a script that calls ``Index.ingest`` at top level (no ``if __name__ ==
    "__main__"`` guard) would run again in the child and kill it. Hidden the way an
    interactive session has it (no ``__spec__``, no ``__file__``) while the child starts.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if main is not None and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__["__spec__"] = None
            main.__dict__.pop("__file__", None)
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


def _decode_loop(jobs, items, scan_options: dict, parent: int) -> None:
    """Child-process entry: scan each job, put ``(kind, payload)`` items, stop at ``None``."""

    def put(item, block: bool = True) -> bool:
        while True:
            try:
                items.put(item, timeout=1.0 if block else 0.001)
                return True
            except queue.Full:
                if os.getppid() != parent:
                    os._exit(0)
                if not block:
                    return False

    pending = [0]

    def progress(n: int) -> None:
        pending[0] += n
        if put(("progress", pending[0]), block=False):
            pending[0] = 0

    def next_job():
        while True:
            try:
                return jobs.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:
                    os._exit(0)

    while (job := next_job()) is not None:
        try:
            gen = scan_job(job, scan_options, progress=progress)
            while True:
                try:
                    put(("shot", next(gen)))
                except StopIteration as stop:
                    info = stop.value
                    break
        except (VideoError, OSError) as exc:  # the file's fault: the parent records it and goes on
            put(("error", exc))
            continue
        except Exception as exc:  # a bug: the parent ends the run with it (as a plain, picklable error)
            put(("error", RuntimeError(f"decoding {job.path} failed: {type(exc).__name__}: {exc}")))
            continue
        if pending[0]:
            put(("progress", pending[0]))
            pending[0] = 0
        put(("done", info))

"""The Ray engine: scanning and the model spread over a Ray cluster.

Each video is one CPU task that decodes it once, detects its shots and writes
their keyframe JPEGs to ``job.root / job.kf_dir`` (the index folder, so it must
be shared storage on a cluster). The task returns two objects: the shot list,
which comes back to the driver, and the keyframe arrays, which stay in Ray's
object store and go straight to a model actor (one per GPU when the cluster has
GPUs, otherwise one on a CPU). Keyframes of several videos are batched into one
actor call. The driver stays the one writer: the :class:`~vidconcept.ingest.Ingestor`
commits each :class:`~vidconcept.engines.base.VideoResult` as it arrives, so
idempotence and crash safety are those of the local engine.

Example::

    with Index("idx", create=True) as idx:
        idx.ingest(["/shared/videos"], engine="ray", engine_options={"address": "head:6379"})

Without an address a local Ray runtime is started for the run (and stopped
after); if Ray is already initialised in this process, that runtime is used.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import ray

from .. import config
from ..errors import UsageError
from .base import (FileOutcome, VideoJob, VideoResult, default_workers, model_fingerprint, predict_into,
                   progress_bar, scan_whole, split_results, stack_outputs)

log = logging.getLogger(__name__)

#: A scan whose worker or node died is tried once more, then recorded as failed.
SCAN_RETRIES = 1
#: Model calls queued per actor before the driver stops starting new scans (backpressure).
CALLS_PER_ACTOR = 2
#: Ray errors that mean "this video's task was lost", not "the engine is broken".
_LOST = tuple(getattr(ray.exceptions, n) for n in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError",
                                                  "OutOfMemoryError") if hasattr(ray.exceptions, n))

ScanRef = ray.ObjectRef  # the (info, shots) | FileOutcome half of a scan task's result


@ray.remote(num_returns=2, max_retries=SCAN_RETRIES)
def _scan_remote(job: VideoJob, scan_options: dict):
    """Scan one video; its keyframe arrays are returned as a separate object."""
    out = scan_whole(job, scan_options)
    if isinstance(out, FileOutcome):
        return out, []
    info, shots, frames = out
    return (info, shots), frames


class ModelActor:
    """Holds one loaded bundle; scores the keyframes of one or more videos per call."""

    def __init__(self, bundle: str, device: str, batch_size: int):
        from ..model import ConceptModel

        self.model = ConceptModel.load(bundle, device=device)
        self.batch_size = batch_size

    def identity(self) -> tuple:
        return _identity(self.model)

    def predict(self, *videos: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frames = [f for video in videos for f in video]
        predictions: list = []
        predict_into(self.model, frames, predictions, self.batch_size)
        return stack_outputs(self.model, predictions)


def _identity(model) -> tuple:
    """What must match between the driver's model and the actors': concepts, and the bundle's config."""
    return model_fingerprint(model), getattr(model, "config", None)


class RayEngine:
    """Runs scanning as Ray tasks and the model as Ray actors.

    Args:
        model: the driver's model (or a callable returning it); the actors load the
            same bundle and their fingerprint is checked against it.
        scan_options: shot-detection options for :class:`~vidconcept.video.ShotScanner`.
        workers: videos scanned at once; default: half this machine's cores for a
            local runtime, the cluster's CPUs less the model actors' when joining one.
        batch_size: keyframes per model batch, and the least sent per actor call.
        progress: show a bar of scanned videos.
        address: a Ray cluster to join (``host:port``, ``ray://…`` or ``auto``); ``None``
            starts a local runtime for the run, sized by ``workers``.
        model_dir: the bundle the actors load; default: the driver model's
            ``bundle_dir`` when it has one, else :func:`config.resolve_model_dir`.
            It must be readable at the same path on every node.
        model_actors: how many model actors; default one per cluster GPU, or one.
    """

    def __init__(self, model, scan_options: dict | None = None, workers: int | None = None,
                 batch_size: int = 32, progress: bool = False, address: str | None = None,
                 model_dir: str | Path | None = None, model_actors: int | None = None):
        self.model = model
        self.scan_options = scan_options or {}
        self.workers = workers
        self.batch_size = batch_size
        self.progress = progress
        self.address = address
        self.model_dir = model_dir
        self.model_actors = model_actors

    def run(self, jobs: list[VideoJob]) -> Iterator[VideoResult | FileOutcome]:
        model = self.model() if callable(self.model) else self.model
        with self._runtime():
            actors = self._start_actors(model)
            try:
                yield from _Stream(self, actors).run(jobs)
            finally:
                for actor in actors:
                    ray.kill(actor)

    # ---- cluster ------------------------------------------------------------
    @contextmanager
    def _runtime(self):
        """Join ``address``, reuse this process's runtime, or start a small local one."""
        if ray.is_initialized():
            yield
            return
        options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if self.address is None:  # "local": never attach to a cluster `ray start` left on this machine
            options["num_cpus"] = self._scan_workers() + (self.model_actors or 1) * self._local_actor_cpus()
        else:
            _check_reachable(self.address)
        try:
            ray.init(address=self.address or "local", **options)
        except (ConnectionError, ValueError) as exc:
            raise UsageError(f"cannot join the Ray cluster at {self.address!r}: {exc} (if its head has token "
                             "authentication, set RAY_AUTH_MODE=token and its token: `ray get-auth-token`)") from exc
        try:
            log.info("Ray: %s", ray.cluster_resources())
            yield
        finally:
            ray.shutdown()

    def _scan_workers(self) -> int:
        return self.workers or default_workers()

    def _local_actor_cpus(self) -> int:
        """A local CPU model actor gets the cores the scanners leave, as in the local engine
        (Ray limits an actor's torch threads to its ``num_cpus``)."""
        return max(1, ((os.cpu_count() or 2) - self._scan_workers()) // (self.model_actors or 1))

    def _start_actors(self, model) -> list:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        n = self.model_actors or max(gpus, 1)
        options = {"num_cpus": 1, "max_restarts": 1, "max_task_retries": 1}
        if gpus:
            options["num_gpus"] = 1
        elif self.address is None:
            options["num_cpus"] = self._local_actor_cpus()
        bundle = str(Path(self.model_dir or getattr(model, "bundle_dir", None) or config.resolve_model_dir()).resolve())
        cls = ray.remote(ModelActor).options(**options)
        actors = [cls.remote(bundle, "cuda" if gpus else "cpu", self.batch_size) for _ in range(n)]
        try:
            _check_actors(actors, model, bundle)
        except UsageError:
            for actor in actors:
                ray.kill(actor)
            raise
        return actors

    def scan_slots(self, n_actors: int) -> int:
        """Videos scanned at once: ``workers``, else the local share, else the cluster's spare CPUs."""
        if self.workers or self.address is None:
            return self._scan_workers()
        return max(1, int(ray.cluster_resources().get("CPU", 1)) - n_actors)


def _check_actors(actors: list, model, bundle: str) -> None:
    """The actors loaded ``bundle``, and it is the driver's model."""
    try:
        found = ray.get([a.identity.remote() for a in actors])
    except ray.exceptions.RayActorError as exc:
        raise UsageError(f"Ray model actors could not load {bundle}: it must be at that path on every node "
                         f"({exc})") from exc
    want = _identity(model)
    for got in found:
        if got != want:
            raise UsageError(f"Ray model actors loaded {bundle} ({got[0]['name']!r}), which is not the ingest's "
                             f"model {want[0]['name']!r}: pass engine_options={{'model_dir': …}} with its bundle folder")


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody listens at: Ray itself retries for many minutes."""
    host, sep, port = address.rpartition(":")
    if address.startswith("ray://") or address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(f"no Ray cluster at {address} ({exc.strerror or exc}): start its head with "
                         f"`ray start --head --port {port}`, or drop --ray-address for a local runtime") from exc


class _Stream:
    """One run's bookkeeping: scans in flight, scanned videos waiting for the model,
    and model calls in flight; yields results in the order they finish."""

    def __init__(self, engine: RayEngine, actors: list):
        self.engine, self.actors = engine, actors
        self.slots = engine.scan_slots(len(actors))
        self.scans: dict[ScanRef, tuple[VideoJob, ray.ObjectRef]] = {}
        self.waiting: list[tuple[VideoJob, object, list, ray.ObjectRef]] = []
        self.calls: dict[ray.ObjectRef, list[tuple[VideoJob, object, list]]] = {}
        self.turn = 0

    def run(self, jobs: list[VideoJob]) -> Iterator[VideoResult | FileOutcome]:
        todo = iter(jobs)
        bar = progress_bar(total=len(jobs), desc="scanned", unit="video", leave=False,
                           disable=not self.engine.progress, position=1)
        try:
            self._start_scans(todo)
            while self.scans or self.calls or self.waiting:
                self._dispatch()
                ready, _ = ray.wait([*self.scans, *self.calls], num_returns=1)
                for ref in ready:
                    if ref in self.scans:
                        bar.update(1)
                        yield from self._scanned(ref)
                    else:
                        yield from self._scored(ref)
                self._start_scans(todo)
        finally:
            bar.close()

    def _start_scans(self, todo: Iterator[VideoJob]) -> None:
        """Keep ``slots`` scans running while the model keeps up."""
        while len(self.scans) < self.slots and len(self.calls) < CALLS_PER_ACTOR * len(self.actors):
            job = next(todo, None)
            if job is None:
                return
            # Workers run elsewhere: give them absolute paths (the results keep the user's).
            remote = dataclasses.replace(job, path=Path(job.key), root=job.root.resolve())
            meta, frames = _scan_remote.remote(remote, self.engine.scan_options)
            self.scans[meta] = (job, frames)

    def _scanned(self, ref: ScanRef) -> Iterator[FileOutcome]:
        job, frames = self.scans.pop(ref)
        try:
            out = ray.get(ref)
        except _LOST as exc:
            log.debug("%s: scan lost: %s", job.path, exc)
            out = FileOutcome(str(job.path), "failed", reason="decoder process crashed")
        if isinstance(out, FileOutcome):
            yield dataclasses.replace(out, path=str(job.path))
        else:
            self.waiting.append((job, *out, frames))

    def _dispatch(self) -> None:
        """Send the waiting videos to the next actor once they fill a batch (or nothing else will come)."""
        shots = sum(len(w[2]) for w in self.waiting)
        if not self.waiting or (shots < self.engine.batch_size and self.scans):
            return
        actor = self.actors[self.turn % len(self.actors)]
        self.turn += 1
        call = actor.predict.remote(*[w[3] for w in self.waiting])
        self.calls[call] = [w[:3] for w in self.waiting]
        self.waiting = []

    def _scored(self, ref: ray.ObjectRef) -> Iterator[VideoResult]:
        videos = self.calls.pop(ref)
        yield from split_results(videos, *ray.get(ref))

"""Keyframe choice in a single pass, with bounded memory, and keyframe storage.

A shot's end (hence its middle) is only known at the next cut, and decoding
must not seek back. :class:`CandidateBuffer` therefore keeps a *decimated*
sample of the current shot: every ``stride``-th frame, downscaled to at most
``keyframe_side`` pixels; when the buffer fills, the stride doubles and every
other sample is dropped. Memory is ``capacity`` small images whatever the
shot's length, and the samples stay evenly spread over the shot.

At the shot's end :func:`pick_keyframe` takes the few samples nearest the
middle, discards black ones and returns the sharpest by the variance of the
Laplacian (Pech-Pacheco et al., *Diatom autofocusing in brightfield
microscopy*, ICPR 2000), so a keyframe is never black or motion-blurred when a
better frame lies close to the middle. A shot with only black samples still
gets its middle sample.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vidconcept.config import KEYFRAME_JPEG_QUALITY, KEYFRAME_MAX_SIDE
from vidconcept.errors import VideoError

log = logging.getLogger(__name__)

#: Samples kept per shot: decoded frames (12 of 1080p are about 37 MB) that are
#: converted to RGB only if chosen.
CAPACITY = 12
#: Initial samples per second of video; converting a frame to RGB is the
#: costliest per-frame step, so the buffer starts sparse.
SAMPLES_PER_S = 6.0
#: Samples nearest the middle among which the sharpest non-black one wins.
NEAR_MIDDLE = 5
#: Mean luma (0-255 RGB average) under which a sample counts as black/blank.
BLANK_MEAN = 20.0
#: Luma standard deviation under which a sample counts as blank (a flat colour).
BLANK_STD = 6.0


#: Longest side of the grey images the sharpness/blank tests look at.
GRAY_SIDE = 256


@dataclass
class Candidate:
    """One sample of the current shot: an RGB array, or a decoded frame (anything
    with ``rgb(max_side)`` and ``gray(max_side)``) converted only if it is chosen."""

    index: int
    image: np.ndarray | object
    slot: int = -1  # the sampling position it fills: ``index``, or the skipped frame it stands in for

    def __post_init__(self) -> None:
        if self.slot < 0:
            self.slot = self.index

    @property
    def time_s(self) -> float | None:
        """The sample's presentation time, when it is a decoded frame (which knows it)."""
        return getattr(self.image, "time_s", None)

    def gray(self) -> np.ndarray:
        if isinstance(self.image, np.ndarray):
            return cv2.cvtColor(self.image, cv2.COLOR_RGB2GRAY)
        return self.image.gray(GRAY_SIDE)

    def rgb(self, max_side: int | None) -> np.ndarray:
        if isinstance(self.image, np.ndarray):
            return self.image
        return self.image.rgb(max_side)


@dataclass
class CandidateBuffer:
    """Evenly spread samples of the current shot in O(capacity) memory.

    Args:
        base_stride: Sampling stride at the start of each shot (frames).
        capacity: Samples kept before the stride doubles.
    """

    base_stride: int = 1
    capacity: int = CAPACITY
    items: list[Candidate] = field(default_factory=list)
    stride: int = 0
    latest: int = -1  # index of the newest sample

    def __post_init__(self) -> None:
        self.stride = self.stride or self.base_stride

    @classmethod
    def for_fps(cls, fps: float) -> CandidateBuffer:
        return cls(base_stride=max(1, round(fps / SAMPLES_PER_S)))

    def wants(self, index: int, shot_start: int) -> bool:
        """Whether frame ``index`` should be sampled (cheap; call before converting).

        Every ``stride``-th frame, and any frame while the current shot has no
        sample yet, so even a shot shorter than the stride gets a keyframe.
        """
        return index % self.stride == 0 or self.latest < shot_start

    def add(self, index: int, image: np.ndarray, slot: int | None = None) -> None:
        """Sample frame ``index``; ``slot``: the wanted frame it stands in for, when that one
        had no decoded pixels (see :mod:`vidconcept.video.skim`)."""
        self.items.append(Candidate(index, image, index if slot is None else slot))
        self.latest = index
        if len(self.items) > self.capacity:
            self.stride *= 2
            self.items = [c for c in self.items if c.slot % self.stride == 0 or c.index == index]

    def split(self, end: int) -> list[Candidate]:
        """Remove and return the samples before frame ``end``; restart sampling."""
        done = [c for c in self.items if c.index < end]
        self.items = [c for c in self.items if c.index >= end]
        self.stride = self.base_stride
        return done


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: high for in-focus detail, low for blur and flat frames."""
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def is_blank(gray: np.ndarray) -> bool:
    """Black or a flat colour: nothing a concept model could recognise."""
    mean, std = cv2.meanStdDev(gray)
    return bool(mean[0, 0] < BLANK_MEAN or std[0, 0] < BLANK_STD)


def pick_keyframe(candidates: list[Candidate], start: int, end: int, max_side: int | None = None) -> np.ndarray | None:
    """The sharpest non-blank of the samples nearest the shot's middle (see module doc),
    as RGB with its longest side at most ``max_side``. Only the winner is converted
    to RGB: the tests run on small grey images."""
    best = pick_candidate(candidates, start, end)
    return best.rgb(max_side) if best is not None else None


def pick_candidate(candidates: list[Candidate], start: int, end: int) -> Candidate | None:
    """The sample :func:`pick_keyframe` converts (its frame number is recorded with the shot,
    so an upgrade can seek back to exactly this frame)."""
    if not candidates:
        return None
    middle = (start + end - 1) / 2
    near = sorted(candidates, key=lambda c: abs(c.index - middle))[:NEAR_MIDDLE]
    grays = [c.gray() for c in near]
    usable = [i for i, gray in enumerate(grays) if not is_blank(gray)]
    best = max(usable, key=lambda i: sharpness(grays[i])) if usable else 0
    return near[best]


def save_keyframe(image: np.ndarray, path: Path, max_side: int = KEYFRAME_MAX_SIDE) -> np.ndarray:
    """Write an RGB uint8 image as JPEG, longest side <= ``max_side``, atomically, and
    return the pixels the file holds (the JPEG decoded again).

    The model scores those returned pixels, not the frame before compression: the stored
    keyframe is then exactly what was scored, so ``vidconcept upgrade`` rescoring it with
    another model gives what a fresh ingest would (see docs/upgrade.md).

    The file appears complete or not at all (write to a temporary file in the
    same folder, then rename), so a crash never leaves a truncated keyframe that
    a later idempotent re-ingest would take for a finished one.
    """
    path = Path(path)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise VideoError(f"{path}: keyframe must be an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    ok, data = cv2.imencode(".jpg", _fit(image, max_side)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, KEYFRAME_JPEG_QUALITY])
    if not ok:
        raise VideoError(f"{path}: could not encode the keyframe as JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, data.tobytes())
    return _rgb(cv2.imdecode(data, cv2.IMREAD_COLOR), path)


def load_keyframe(path: Path) -> np.ndarray:
    """A stored keyframe as RGB uint8, decoded as :func:`save_keyframe` decodes it."""
    data = np.fromfile(str(path), np.uint8) if Path(path).is_file() else np.empty(0, np.uint8)
    return _rgb(cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None, path)


def _rgb(bgr: np.ndarray | None, path: Path) -> np.ndarray:
    if bgr is None:
        raise VideoError(f"{path}: cannot read the keyframe JPEG")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
        tmp.write(data)
    try:
        os.replace(tmp.name, path)
    except OSError:
        Path(tmp.name).unlink(missing_ok=True)
        raise

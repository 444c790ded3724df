"""Video -> shots (+ one keyframe per shot) in a single decode pass.

:class:`ShotScanner` drives one :class:`~vidconcept.video.decode.FrameReader`
and one registered detector (see :mod:`vidconcept.video.detectors`) and yields
each shot as soon as the detector has reported the boundary that ends it,
together with its keyframe chosen from a bounded sample of the shot (see
:mod:`vidconcept.video.keyframes`). Nothing is decoded twice and nothing seeks.

Keyframes are never taken from the mixed frames of a gradual transition
(the detector's ``gradual_spans``): those belong to neither shot.
Segments in which every frame is black (leading/trailing black, the black
between a fade-out and a fade-in) are not content shots and are not yielded,
except that a video that is black throughout is one shot.

Example::

    scanner = ShotScanner("clip.mp4", progress=bar.update)
    for shot, keyframe in scanner:
        save_keyframe(keyframe, out / f"{shot.index:05d}.jpg")
    print(scanner.info.frames)   # decoded frame count

    detect_shots("clip.mp4").to_json()   # {"fps":..., "frames":..., "shots": [...]}
"""
from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from scenedetect import FrameTimecode

from vidconcept.records import Shot
from vidconcept.video.decode import Frame, FrameReader, VideoInfo
from vidconcept.video.detectors import BGR_WIDTH, DetectorSpec, get_detector
from vidconcept.config import KEYFRAME_MAX_SIDE, resolve_skim
from vidconcept.video.keyframes import Candidate, CandidateBuffer, pick_candidate
from vidconcept.video.skim import open_reader
from vidconcept.video.transitions import is_black

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
#: How many decoded frames to report to ``progress`` at a time.
_PROGRESS_EVERY = 25
#: Frames whose time is remembered; detectors report boundaries at most this far back.
_TIME_MEMORY = 4096


@dataclass(frozen=True)
class ScanResult:
    """What :func:`detect_shots` returns: the decoded video's info and its shots."""

    info: VideoInfo
    shots: list[Shot]

    def to_json(self) -> dict:
        return {"fps": self.info.fps, "frames": self.info.frames,
                "shots": [s.to_dict(index=False) for s in self.shots]}


@dataclass
class _Mark:
    """Where a frame lies in time and how many non-black frames preceded it."""

    time_s: float
    content_before: int


@dataclass
class _ShotBuilder:
    """Turns boundary frame numbers into :class:`Shot` objects as frames stream by."""

    keyframe_side: int | None
    marks: dict[int, _Mark] = field(default_factory=dict)
    order: deque[int] = field(default_factory=deque)
    candidates: CandidateBuffer = field(default_factory=CandidateBuffer)
    start: int = 0
    start_mark: _Mark = field(default_factory=lambda: _Mark(0.0, 0))
    content: int = 0  # non-black frames so far
    count: int = 0  # shots yielded
    first_frame: Frame | None = None  # keyframe of last resort (an all-black video)
    last_decoded: Frame | None = None  # the newest frame with pixels (a keyframe of last resort)
    owed: int | None = None  # a sample due at this frame had no decoded pixels: the next decoded one fills it
    transitions: Sequence[tuple[int, int]] = ()  # the detector's gradual spans (live view)

    def add(self, frame: Frame) -> None:
        if frame.index == 0 and self.keyframe_side:
            self.first_frame = frame
        self.marks[frame.index] = _Mark(frame.time_s, self.content)
        self.order.append(frame.index)
        if len(self.order) > _TIME_MEMORY:
            del self.marks[self.order.popleft()]
        black = is_black(frame.small[:, :, 0])
        self.content += not black
        if frame.av_frame is not None and self.keyframe_side:
            self.last_decoded = frame
        if self.keyframe_side and not black and (self.owed is not None or self.candidates.wants(frame.index, self.start)):
            # a frame the decoder skipped (no pixels, see video.skim) passes its turn to the next decoded one
            slot = frame.index if self.owed is None else self.owed
            self.owed = slot if frame.av_frame is None else None
            if frame.av_frame is not None:
                self.candidates.add(frame.index, frame, slot)  # converted to RGB only if chosen

    def close(self, end: int, end_mark: _Mark) -> Iterator[tuple[Shot, np.ndarray | None]]:
        """End the current shot before frame ``end``; yield it unless it is all black."""
        if end <= self.start:
            return
        samples = self._outside_transitions(self.candidates.split(end)) if self.keyframe_side else []
        start, start_mark = self.start, self.start_mark
        self.start, self.start_mark = end, end_mark
        if end_mark.content_before == start_mark.content_before:
            log.debug("dropping black segment [%d, %d)", start, end)
            return
        best = pick_candidate(samples, start, end) if self.keyframe_side else None
        if best is None and self.keyframe_side and self.last_decoded is not None:
            # no decoded sample in the shot (cannot happen with a full decode): the newest decoded frame stands in
            log.warning("shot [%d, %d): no decoded frame sampled; keyframe from frame %d", start, end,
                        self.last_decoded.index)
            best = Candidate(self.last_decoded.index, self.last_decoded)
        kf_at = (best.index, best.time_s) if best is not None else (None, None)
        shot = Shot(self.count, start, end, start_mark.time_s, end_mark.time_s,
                    keyframe_frame=kf_at[0], keyframe_s=kf_at[1])
        self.count += 1
        yield shot, (best.rgb(self.keyframe_side) if best is not None else None)

    def _outside_transitions(self, samples: list) -> list:
        """Samples that are not mixed frames of a gradual transition (all of them if none is)."""
        clean = [c for c in samples if not any(a <= c.index <= b for a, b in self.transitions)]
        return clean or samples

    def close_at(self, end: int) -> Iterator[tuple[Shot, np.ndarray | None]]:
        mark = self.marks.get(end)
        if mark is None:  # older than remembered: cannot happen with registered detectors
            log.warning("boundary at frame %d reported too late; ignored", end)
            return
        yield from self.close(end, mark)


class ShotScanner:
    """One decode pass: detects shots and picks one keyframe per shot in the same pass
    (no second decode, no seeking back).

    Args:
        path: Video file.
        detector: Registered detector name (:func:`list_detectors`); default ``"vidconcept"``.
        threshold: Detector sensitivity (meaning depends on the detector); ``None``: its default.
        min_shot_s: Minimum shot length in seconds; ``None``: the detector's default.
        keyframes: Whether to pick keyframes (``False`` yields ``None`` instead and is faster).
        keyframe_side: Longest side of the keyframes yielded, in pixels.
        progress: Called with the number of frames just decoded (e.g. ``tqdm.update``).
        skim: Decode only reference frames where the codec allows and look again in full
            around possible boundaries (:mod:`vidconcept.video.skim`); ``False`` decodes every
            frame; ``None``: ``$VIDCONCEPT_SKIM``, default on. Only for detectors that read
            small YUV frames (ours).

    Raises:
        VideoError: The file cannot be opened or has no decodable video frames.
        UnknownNameError: ``detector`` is not registered.
        UsageError: A negative ``threshold`` or ``min_shot_s``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        detector: str | None = None,
        threshold: float | None = None,
        min_shot_s: float | None = None,
        keyframes: bool = True,
        keyframe_side: int = KEYFRAME_MAX_SIDE,
        progress: Progress | None = None,
        skim: bool | None = None,
    ):
        self._spec: DetectorSpec = get_detector(detector)
        self._detector = self._spec.build(threshold=threshold, min_shot_s=min_shot_s)
        self._keyframe_side = keyframe_side if keyframes else None
        self._progress = progress
        self._reader = open_reader(path, skim=resolve_skim(skim) and self._spec.frame_format == "yuv")
        self.info: VideoInfo = self._reader.info

    def __iter__(self) -> Iterator[tuple[Shot, np.ndarray | None]]:
        builder = _ShotBuilder(self._keyframe_side, candidates=CandidateBuffer.for_fps(self.info.fps),
                               transitions=getattr(self._detector, "gradual_spans", ()))
        pending = 0
        last = None
        for frame in self._reader:
            builder.add(frame)
            last = self._timecode(frame.index)
            for cut in self._detector.process_frame(last, self._detector_input(frame)):
                yield from builder.close_at(cut.frame_num)
            pending = self._report(pending + 1)
        self.info = self._reader.info
        yield from self._finish(builder, last)
        self._report(pending, force=True)

    def _finish(self, builder: _ShotBuilder, last: FrameTimecode | None) -> Iterator[tuple[Shot, np.ndarray | None]]:
        if last is not None:
            for cut in self._detector.post_process(last):
                yield from builder.close_at(cut.frame_num)
        end_mark = _Mark(self.info.duration_s, builder.content)
        yield from builder.close(self.info.frames, end_mark)
        if builder.count == 0 and self.info.frames:
            # Nothing but black: still one shot, so the video is indexed and not "undecodable".
            first = builder.first_frame.rgb(self._keyframe_side) if builder.first_frame is not None else None
            at = (0, 0.0) if first is not None else (None, None)
            yield Shot(0, 0, self.info.frames, 0.0, self.info.duration_s, keyframe_frame=at[0], keyframe_s=at[1]), first

    def _timecode(self, index: int) -> FrameTimecode:
        return FrameTimecode(index, fps=self.info.fps if self.info.fps > 0 else 25.0)

    def _detector_input(self, frame: Frame) -> np.ndarray:
        return frame.small if self._spec.frame_format == "yuv" else frame.bgr(BGR_WIDTH)

    def _report(self, pending: int, force: bool = False) -> int:
        if self._progress is not None and pending and (force or pending >= _PROGRESS_EVERY):
            self._progress(pending)
            return 0
        return pending if self._progress is not None else 0


def detect_shots(path: str | os.PathLike, **kwargs) -> ScanResult:
    """Shots of one video without keyframes: :class:`ShotScanner` run to the end.

    Keyword arguments are those of :class:`ShotScanner` (``keyframes`` is forced off).
    """
    kwargs["keyframes"] = False
    scanner = ShotScanner(path, **kwargs)
    shots = [shot for shot, _ in scanner]
    return ScanResult(scanner.info, shots)

"""Open a video with PyAV and read it once, front to back.

Everything downstream (shot detection, keyframes) works from one sequential
decode, so this module is the only place that talks to PyAV. It turns every
PyAV/FFmpeg failure into a :class:`~vidconcept.errors.VideoError` naming the
file, reads rotation from the display matrix and times from frame PTS (so
variable-frame-rate files get true times), and hands out two views per frame:
a small YUV image for detection (cheap: the planes are decimated and
resized with ``cv2.INTER_AREA``, no colour conversion) and the full-resolution frame, from
which keyframes are converted on demand.

Example::

    reader = FrameReader("clip.mp4")
    print(reader.info.fps, reader.info.width, reader.info.height)
    for frame in reader:
        ...  # frame.index, frame.time_s, frame.small, frame.rgb(512)
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import av
import cv2
import numpy as np

from vidconcept.errors import VideoError

log = logging.getLogger(__name__)

#: ``FrameReader.frames_at`` decodes forward across gaps up to this long instead of seeking.
SEEK_GAP_S = 2.0

#: Width of the frames the detectors see. 160 px keeps the per-frame cost far
#: below the decode cost while leaving enough detail for colour/edge statistics.
DETECT_WIDTH = 160

#: Pixel formats whose planes can be resized directly (8-bit, chroma at half size).
_PLANAR_420 = frozenset({"yuv420p", "yuvj420p"})

#: PyAV raises these for damaged or unsupported input.
_DECODE_ERRORS = (av.FFmpegError, ValueError, OSError, EOFError)

#: Decoded frames held ahead of the reader, in bytes of picture (at least 2 frames, at most 16).
AHEAD_BYTES = 48 << 20
#: Packets whose timestamps a reader reads from the start of the stream (:class:`StreamHead`) ...
HEAD_PACKETS = 48
#: ... and of which it counts the slices.
HEAD_SLICES = 8


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, as far as indexing cares.

    ``width``/``height`` are the display size, i.e. after ``rotation`` (degrees
    counter-clockwise, one of 0/90/180/270) has been applied. ``frames`` and
    ``duration_s`` start as the container's estimate and are replaced by the
    decoded truth once a :class:`FrameReader` has been read to the end.
    """

    path: Path
    fps: float
    frames: int
    duration_s: float
    width: int
    height: int
    rotation: int = 0


@dataclass
class Frame:
    """One decoded frame: its position, its time and two views of its pixels."""

    index: int
    time_s: float
    small: np.ndarray  # HxWx3 uint8 YUV (full-range agnostic), width DETECT_WIDTH
    av_frame: av.VideoFrame
    rotation: int = 0

    def rgb(self, max_side: int) -> np.ndarray:
        """The frame as RGB uint8, rotated for display, longest side <= ``max_side``."""
        w, h = fit_size(self.av_frame.width, self.av_frame.height, max_side)
        rgb = self.av_frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA")
        return rotate(rgb, self.rotation)

    def gray(self, max_side: int) -> np.ndarray:
        """The unrotated luma plane, longest side <= ``max_side`` (for sharpness tests).

        Read straight from the decoded Y plane (full range) when the frame is planar 4:2:0:
        a swscale conversion per keyframe candidate cost more than the shot detection's
        whole downscale."""
        w, h = fit_size(self.av_frame.width, self.av_frame.height, max_side)
        name = self.av_frame.format.name
        if name not in _PLANAR_420:
            return self.av_frame.to_ndarray(width=w, height=h, format="gray", interpolation="AREA")
        luma = _shrink(_plane(self.av_frame, 0), w, h)
        if name.startswith("yuvj") or self.av_frame.color_range == 2:  # already full range (JPEG)
            return luma
        return cv2.convertScaleAbs(luma, alpha=255 / 219, beta=-16 * 255 / 219)

    def bgr(self, width: int) -> np.ndarray:
        """The unrotated frame as BGR uint8, ``width`` px wide (for PySceneDetect's detectors)."""
        w = min(width, self.av_frame.width)
        h = max(2, round(self.av_frame.height * w / self.av_frame.width))
        return self.av_frame.to_ndarray(width=w, height=h, format="bgr24", interpolation="AREA")


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Scale ``width``x``height`` down (never up) so the longest side is <= ``max_side``."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale)), max(2, round(height * scale))


def rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise display rotation (multiple of 90 degrees)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def _plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    plane = frame.planes[i]
    data = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return data[:, : plane.width]


def small_yuv(frame: av.VideoFrame, width: int = DETECT_WIDTH) -> np.ndarray:
    """Downscale a frame to ``width`` px wide as a 3-channel YUV image.

    Resizing the three planes with OpenCV costs a fraction of what a swscale
    conversion to BGR does, and the detectors only need colour *differences*.
    """
    if frame.format.name not in _PLANAR_420:
        frame = frame.reformat(format="yuv420p")
    height = max(2, round(frame.height * width / frame.width))
    return cv2.merge([_shrink(_plane(frame, i), width, height) for i in range(3)])


def _shrink(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize one plane; big planes are first decimated by slicing (free) down to
    about twice the target, because INTER_AREA over a full HD plane costs more
    than the rest of the per-frame work together."""
    step = max(1, plane.shape[1] // (2 * width))
    return cv2.resize(plane[::step, ::step], (width, height), interpolation=cv2.INTER_AREA)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a directory, not a video file")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: permission denied; check the file's read permissions")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: file is empty (0 bytes)")


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except _DECODE_ERRORS as ex:
        reason = getattr(ex, "strerror", None) or str(ex)
        raise VideoError(f"{path}: cannot open as a video ({reason}); is it a complete video file?") from ex


def _fps(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else 0.0


class FrameReader:
    """Sequential decoder of one video stream; iterate once to get :class:`Frame` objects.

    The container is opened and the first frame decoded in ``__init__`` so that
    unreadable files fail early and ``info`` (including the rotation, which
    FFmpeg reports per frame) is valid before iteration. A decode error after
    at least one frame is treated as truncation: logged, and iteration stops.
    """

    def __init__(self, path: str | os.PathLike, *, detect_width: int = DETECT_WIDTH):
        self.path = Path(path)
        self.detect_width = detect_width
        _check_path(self.path)
        self._container = _open_container(self.path)
        if not self._container.streams.video:
            self.close()
            raise VideoError(f"{self.path}: no video stream (audio-only or not a video file)")
        self._stream = self._container.streams.video[0]
        self.head = read_head(self.path)
        self._stream.thread_type = thread_type(self.head)
        self._stream.thread_count = slice_threads(self.head)
        self._ahead: _Ahead | None = None
        # The deblocking filter only smooths block edges: skipping it saves ~17 % of
        # H.264 decoding and changes nothing that detection on 160-px frames or a
        # keyframe scaled down for the model can see.
        ctx = self._stream.codec_context
        ctx.options = {**ctx.options, "skip_loop_filter": "all"}
        self._frames = self._decode_frames()
        self._first = self._first_frame()
        self.info = self._probe()
        self.truncated = False

    def _decode_frames(self) -> Iterator[av.VideoFrame]:
        return self._container.decode(self._stream)

    def _first_frame(self) -> av.VideoFrame:
        try:
            return next(self._frames)
        except StopIteration:
            self.close()
            raise VideoError(f"{self.path}: the video stream has no decodable frames") from None
        except _DECODE_ERRORS as ex:
            self.close()
            raise VideoError(f"{self.path}: cannot decode the first frame ({ex}); the file may be corrupt") from ex

    def _probe(self) -> VideoInfo:
        first, stream = self._first, self._stream
        rotation = round(getattr(first, "rotation", 0) or 0) % 360
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        fps = _fps(stream)
        duration = _duration(self._container, stream)
        frames = stream.frames or round(duration * fps)
        self._t0 = first.time or 0.0
        return VideoInfo(self.path, fps, frames, duration, width, height, rotation)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        last_time = -1.0
        for av_frame, small in self._all_frames():
            time_s = self._time_of(av_frame, index, last_time)
            yield Frame(index, time_s, small, av_frame, self.info.rotation)
            last_time, index = time_s, index + 1
        self._finish(index, last_time)

    def _all_frames(self) -> Iterator[tuple[av.VideoFrame, object]]:
        """Every frame with what :meth:`_prepare` makes of it, decoded ahead in a thread (:class:`_Ahead`)."""
        yield self._first, self._prepare(self._first)
        depth = max(2, min(16, AHEAD_BYTES // max(1, self._first.width * self._first.height * 3 // 2)))
        self._ahead = ahead = _Ahead(self._frames, self._prepare, depth)
        try:
            yield from ahead
        except _DECODE_ERRORS as ex:
            self.truncated = True
            log.warning("%s: decoding stopped early (%s); keeping the frames read so far", self.path, ex)
        finally:  # also when the reader is abandoned half-way: its thread must not wait forever
            ahead.close()

    def _prepare(self, frame: av.VideoFrame):
        """Per-frame work done on the decoding thread: the detection image."""
        return small_yuv(frame, self.detect_width)

    def _time_of(self, frame: av.VideoFrame, index: int, last_time: float) -> float:
        """PTS-based time relative to the first frame, kept strictly increasing."""
        step = 1.0 / self.info.fps if self.info.fps > 0 else 0.04
        if frame.time is None:
            return last_time + step if index else 0.0
        time_s = frame.time - self._t0
        return time_s if time_s > last_time else last_time + step

    def _finish(self, frames: int, last_time: float) -> None:
        """Replace the container's estimates by what was decoded."""
        expected = self.info.frames
        if not self.truncated and expected > frames + 1:
            self.truncated = True
            log.warning("%s: decoded %d of the %d frames the container announces; the file may be truncated",
                        self.path, frames, expected)
        fps = self.info.fps if self.info.fps > 0 else (frames / last_time if last_time > 0 else 25.0)
        duration = last_time + 1.0 / fps if frames else 0.0
        self.info = replace(self.info, fps=fps, frames=frames, duration_s=duration)
        self.close()

    def frames_at(self, times: list[float], max_side: int) -> Iterator[tuple[float, np.ndarray]]:
        """``(time_s, RGB)`` of the frame nearest each time (seconds from the first frame), in
        time order, as :meth:`Frame.rgb` renders it during a sequential read: one forward
        decode that seeks (to the keyframe before) only across gaps of more than
        :data:`SEEK_GAP_S`. For ``vidconcept upgrade``: no full decode, no shot detection.
        Use instead of iterating the reader.
        """
        step = 1.0 / self.info.fps if self.info.fps > 0 else 0.04
        frames = itertools.chain([self._first], self._frames)
        at = 0.0  # time of the last frame decoded
        for target in sorted(times):
            if target < at - step / 2 or target - at > SEEK_GAP_S:
                pts = int((self._t0 + max(0.0, target - step)) / self._stream.time_base)
                self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
                frames = self._decode_frames()
            best = None
            try:
                for av_frame in frames:
                    at = av_frame.time - self._t0 if av_frame.time is not None else at + step
                    if best is None or abs(at - target) < abs(best[0] - target):
                        best = (at, av_frame)
                    if at >= target - step / 2:
                        break
            except _DECODE_ERRORS as ex:
                raise VideoError(f"{self.path}: cannot decode near {target:.3f} s ({ex})") from ex
            if best is None:
                raise VideoError(f"{self.path}: no frame near {target:.3f} s (the file may be truncated)")
            frame = Frame(-1, best[0], None, best[1], self.info.rotation)
            yield best[0], frame.rgb(max_side)

    def close(self) -> None:
        """Release the container (idempotent)."""
        ahead, self._ahead = getattr(self, "_ahead", None), None
        if ahead is not None:
            ahead.close()  # before the container: its thread may be decoding from it
        container, self._container = getattr(self, "_container", None), None
        if container is not None:
            container.close()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Ahead:
    """Pulls frames from a decoding iterator in a thread, up to ``depth`` ahead, with each
    frame's ``prepare(frame)`` (its detection image). FFmpeg decodes without holding the GIL and OpenCV
    resizes without it, so the detector's Python work overlaps the decode instead of
    taking turns with it. The iterator is advanced by that thread only; what it raises is
    raised to the reader, in order."""

    def __init__(self, frames: Iterator[av.VideoFrame], prepare, depth: int):
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(frames, prepare), name="vidconcept-decode-ahead",
                                        daemon=True)
        self._thread.start()

    def _run(self, frames: Iterator[av.VideoFrame], prepare) -> None:
        try:
            for frame in frames:
                if not self._put(("frame", (frame, prepare(frame)))):
                    return
        except BaseException as ex:  # handed to the reader, which decides
            self._put(("error", ex))
            return
        self._put(("end", None))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[tuple[av.VideoFrame, object]]:
        while True:
            kind, payload = self._queue.get()
            if kind == "frame":
                yield payload
            elif kind == "end":
                return
            else:
                raise payload

    def close(self) -> None:
        """Stop the thread (it finishes the frame it is decoding) and wait for it."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()


@dataclass(frozen=True)
class StreamHead:
    """The first packets of the video stream, read once when a reader opens (by a second
    demuxer, so the reader's own stays where it is): what its threading (:func:`thread_type`)
    and the skim decode (``video.skim.skim_possible``) are decided from."""

    codec: str
    pts: list[int | None]  # of the first :data:`HEAD_PACKETS` non-empty packets, in decode order
    time_base: float
    slices: list[int]  # H.264: coded slices in each of the first :data:`HEAD_SLICES` packets


def read_head(path: Path) -> StreamHead | None:
    """The :class:`StreamHead` of ``path``'s video stream; ``None`` when it cannot be read."""
    try:
        with av.open(str(path)) as probe:
            video = probe.streams.video[0]
            ctx = video.codec_context
            packets = list(itertools.islice((p for p in probe.demux(video) if p.size), HEAD_PACKETS))
            counts = [slices(bytes(p), ctx.extradata) for p in packets[:HEAD_SLICES]] if ctx.name == "h264" else []
            return StreamHead(ctx.name, [p.pts for p in packets], float(video.time_base or 0), counts)
    except (*_DECODE_ERRORS, IndexError):
        return None


def thread_type(head: StreamHead | None) -> str:
    """FFmpeg's threading for a stream: ``"SLICE"`` for H.264 whose frames come in several
    slices (each frame is then split over the cores, and nothing waits on a frame in flight),
    else ``"AUTO"`` (frame threads). On a 2-core machine slice threads decoded a 2-slice
    720p H.264 stream in 0.76x the wall time and 0.81x the CPU of frame threads; a stream of
    one slice per frame gets no parallelism from them. (FFmpeg's HEVC decoder threads slices
    only for wavefront or tiles: it keeps frame threads.)"""
    if head is None or head.codec != "h264" or not head.slices:
        return "AUTO"
    return "SLICE" if min(head.slices) >= 2 else "AUTO"


def slice_threads(head: StreamHead | None) -> int:
    """How many threads decode a stream that :func:`thread_type` gives slice threads: one per
    slice of its frames, at most one per core (FFmpeg's own choice, cores + 1, took 5-10 % more CPU
    and 4-6 % more wall time on the 2-slice benchmark video of a 2-core machine:
    ``benchmarks/first_pass.py``); ``0`` (FFmpeg chooses) for frame threads."""
    if thread_type(head) != "SLICE":
        return 0
    return max(1, min(min(head.slices), os.cpu_count() or 1))


def slices(data: bytes, extradata: bytes | None) -> int:
    """How many coded slices one H.264 packet holds (length-prefixed NAL units as in MP4/MKV
    when ``extradata`` is an avcC record, else Annex-B start codes as in MPEG-TS)."""
    if extradata and extradata[0] == 1 and len(extradata) > 4:
        size = (extradata[4] & 3) + 1  # lengthSizeMinusOne + 1
        units, at = [], 0
        while at + size < len(data):
            length = int.from_bytes(data[at:at + size], "big")
            units.append(data[at + size:at + size + 1])
            at += size + length
    else:
        units = [part[:1] for part in data.split(b"\x00\x00\x01")[1:]]
    return sum(1 for u in units if u and u[0] & 0x1F in (1, 5))  # coded slice (non-IDR, IDR)

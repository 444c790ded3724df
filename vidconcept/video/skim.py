"""Decode less: shot detection on the reference frames, an exact second look where it matters.

Non-reference frames (the B-frames of H.264/HEVC/MPEG-2) are 40-45 % of the frames of
typical encodes and nothing predicts from them, so the decoder can drop them
(``skip_frame="NONREF"``) and still decode every other frame correctly. :class:`SkimReader`
does that and still yields *every* frame index, in order, as a
:class:`~vidconcept.video.decode.Frame`:

* a dropped frame between two reference frames that are alike (no large change, no black
  edge: a *quiet* gap) gets a small detection image blended from its two neighbours; it has
  no decoded pixels (``av_frame is None``) and is never a keyframe;
* where the change across a gap is a spike against the gaps around it, or the picture turns
  black or back (where a cut or a black edge may hide), the dropped frames of that gap and of
  the two gaps beside it are decoded for real: the packets since the last keyframe are kept
  (compressed: a few MB) and replayed through a second decoder that skips the other
  non-reference frames. So a cut on a dropped frame is found at its exact frame.

The detector thus sees the same frames as in a full decode wherever a boundary can be; in
quiet stretches it sees blends of real neighbours. Timing is from each packet's PTS, so frame
numbers are those of a full sequential decode. Where the shortcut cannot be trusted (codecs
other than the ones named in :data:`SKIM_CODECS`, AVI's timestamps, packets without PTS or not
a frame apart, as field-coded streams have them)
:func:`skim_possible` says no and :class:`~vidconcept.video.shots.ShotScanner` decodes in full.
"""
from __future__ import annotations

import bisect
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import cv2
import numpy as np

from vidconcept.video.decode import _DECODE_ERRORS, Frame, FrameReader, StreamHead, _fps, slice_threads, small_yuv
from vidconcept.video.transitions import YUV_FLOOR, TransitionDetector, _histogram, hist_distance, is_black, \
    pixel_distance

log = logging.getLogger(__name__)

#: Codecs whose non-reference frames FFmpeg can drop and whose streams carry one frame per packet.
SKIM_CODECS = frozenset({"h264", "hevc", "mpeg2video", "mpeg1video", "mpeg4"})
#: Containers whose packets carry real presentation times (AVI stores none for B-frames).
_NO_PTS_FORMATS = ("avi",)
#: A gap is looked at again in full when its change is this many times its neighbours'
#: (scaled to as many frame steps). A cut's step is at least the detector's ``ratio`` (3)
#: times its neighbours', so a gap of ``L`` steps holding one changes about ``(L+2)/L`` times
#: (or more) what ``L`` steps of the same motion do: 2x for ``L = 2``, 1.67x for ``L = 3``.
SPIKE = 1.5
#: Where the colour histogram changes by this share of the detector's ``gradual_threshold``
#: across its window, a dissolve or wipe may be under way: those frames are decoded in full,
#: since the detector's gradual rules weigh single frames (the middle one, the peak).
GRADUAL_SHARE = 0.9
#: ... while the frames on either side change at most this share of it (the detector: 0.6).
SIDES = 0.6
#: Frames around the ends and the middle of such a window decoded in full: the detector
#: looks for the peak of its change up to two frames either side.
PEAK_REACH = 2
#: The detector whose needs the shortcut serves (its defaults: window, gradual threshold).
_DETECTOR = TransitionDetector()
#: The median step of the stream's first packets' timestamps must be at least this share of a
#: frame (fields step by half).
MIN_FRAME_STEP = 0.75
#: Compressed bytes since a keyframe (all kept for replays) beyond which the reader stops skipping.
MAX_BUFFER_BYTES = 64 << 20
#: The reader decodes every frame from the point where the second looks have decoded more
#: than this share of the frames the first pass dropped (a dropped B-frame costs less to
#: decode than a reference frame replayed) ...
WORTH = 0.75
#: ... once it has dropped this many.
WORTH_AFTER = 100


def skim_possible(stream: av.video.stream.VideoStream, container: av.container.InputContainer,
                  head: StreamHead | None) -> bool:
    """Whether :class:`SkimReader` can drop this stream's non-reference frames (else it decodes all):
    a codec of :data:`SKIM_CODECS`, a container with timestamps, and first packets (``head``, see
    :func:`~vidconcept.video.decode.read_head`; ``None``: unreadable) a frame apart (:func:`frame_steps`)."""
    names = set((container.format.name or "").split(","))
    if stream.codec_context.name not in SKIM_CODECS or names & set(_NO_PTS_FORMATS):
        return False
    return head is not None and frame_steps(head.pts, head.time_base, _fps(stream))


def frame_steps(pts: list[int | None], time_base: float, fps: float) -> bool:
    """Whether packet timestamps step by about one frame. The shortcut counts one frame per
    packet; a field-coded stream (a packet per field, as interlaced broadcast H.264 in MPEG-TS
    may be) steps by half a frame and would have its dropped frames counted twice, and packets
    without or with repeated timestamps cannot be placed."""
    if any(p is None for p in pts):
        return False
    steps = np.diff(sorted(pts))
    if len(steps) and steps.min() <= 0:
        return False
    if len(steps) < 2 or fps <= 0 or time_base <= 0:
        return True  # too few to tell; the reader checks each packet's timestamp as it goes
    return float(np.median(steps)) * time_base * fps >= MIN_FRAME_STEP


def open_reader(path, *, skim: bool = True) -> FrameReader:
    """A :class:`SkimReader` (which decodes every frame where the shortcut does not hold,
    see :func:`skim_possible`), or with ``skim=False`` a plain
    :class:`~vidconcept.video.decode.FrameReader`."""
    return SkimReader(path) if skim else FrameReader(path)


@dataclass
class SkimStats:
    """What the shortcut did (for tests and the speed page)."""

    decoded: int = 0  # reference frames, decoded by the first pass
    blended: int = 0  # dropped frames given a blended detection image
    refined: int = 0  # dropped frames decoded in the second look
    replays: int = 0  # second looks (each replays from a keyframe)
    redecoded: int = 0  # frames the second looks decoded (the reference frames on the way included)
    full: bool = False  # decoded every frame (codec or container without the shortcut), or from
    # some point on (a GOP too long to keep, a packet without timestamp)


@dataclass
class _Ref:
    """A decoded reference frame and the dropped frames (their PTS) just before it."""

    av_frame: av.VideoFrame
    small: np.ndarray
    black: bool
    gap: list[int]  # PTS of the dropped frames between the previous reference frame and this one
    index: int  # frame number
    hist: np.ndarray  # the detector's Y/U/V histogram
    change: float = 0.0  # difference to the previous reference frame
    hist_step: float = 0.0  # histogram distance to the previous reference frame
    refine: bool = False  # decode the gap's frames for real


@dataclass
class _Packets:
    """Packets (numbered in decode order) since the keyframe a second look may start from."""

    items: deque[tuple[int, av.Packet]] = field(default_factory=deque)
    keyframes: deque[tuple[int, int]] = field(default_factory=deque)  # (number, PTS)
    number: dict[int, int] = field(default_factory=dict)  # PTS -> number
    count: int = 0

    def add(self, packet: av.Packet) -> None:
        if packet.is_keyframe or not self.keyframes:
            self.keyframes.append((self.count, packet.pts))
        self.items.append((self.count, packet))
        self.number[packet.pts] = self.count
        self.count += 1

    def trim(self, oldest_pts: int) -> None:
        """Forget the packets before the last keyframe shown at or before ``oldest_pts``."""
        while len(self.keyframes) > 1 and self.keyframes[1][1] <= oldest_pts:
            self.keyframes.popleft()
        first = self.keyframes[0][0] if self.keyframes else self.count
        while self.items and self.items[0][0] < first:
            _, packet = self.items.popleft()
            self.number.pop(packet.pts, None)

    def start_for(self, pts: int) -> int:
        """Number of the last keyframe shown at or before ``pts`` (where a replay starts)."""
        starts = [n for n, key_pts in self.keyframes if key_pts <= pts]
        return starts[-1] if starts else (self.items[0][0] if self.items else self.count)

    def since(self, number: int) -> Iterator[tuple[int, av.Packet]]:
        return (item for item in list(self.items) if item[0] >= number)


class SkimReader(FrameReader):
    """A :class:`~vidconcept.video.decode.FrameReader` that decodes reference frames only and
    fills in the rest (see the module docstring). ``stats`` says what it did."""

    def __init__(self, path, **kwargs):
        self.stats = SkimStats()
        self._packets = _Packets()
        self._pending: list[int] = []  # PTS of packets sent, not yet accounted for, sorted
        self._replay_ctx = None
        self._b_next: int | None = None  # next packet for the second decoder; None: start again
        self._cache: dict[int, av.VideoFrame] = {}
        self._fresh: list[av.Packet | None] = []  # packets demuxed since the last frame out (None: "full from here")
        self._full_ahead = False  # the decoding thread's own view of ``stats.full``
        self._give_up = False  # the reader's request to decode every frame from here (see _check_worth)
        self._gop_bytes = 0  # compressed bytes since the last keyframe (the decoding thread's count)
        super().__init__(path, **kwargs)

    # ---- first pass: reference frames only ------------------------------------
    def _decode_frames(self) -> Iterator[av.VideoFrame]:
        self.skimming = skim_possible(self._stream, self._container, self.head)
        if not self.skimming:
            self.stats.full = True
            yield from super()._decode_frames()
            return
        ctx = self._stream.codec_context
        ctx.skip_frame = "NONREF"
        for packet in self._container.demux(self._stream):
            if packet.size:
                self._note(packet, ctx)
            for frame in ctx.decode(packet):
                yield frame

    def _note(self, packet: av.Packet, ctx) -> None:
        """On the decoding thread: remember the packet for the reader (see :meth:`_prepare`)."""
        if self._full_ahead:
            return
        self._gop_bytes = packet.size + (0 if packet.is_keyframe else self._gop_bytes)
        # the request is the reader's, seen here a few frames late: it refines every gap from the
        # frame where it asked (see _emit), so what it yields does not depend on how late
        if packet.pts is None or self._gop_bytes > MAX_BUFFER_BYTES or self._give_up:
            if not self._give_up:
                log.info("%s: decoding every frame from here (%s)", self.path,
                         "a packet without PTS" if packet.pts is None else "GOP too long to keep")
            self._full_ahead = True
            ctx.skip_frame = "DEFAULT"
            self._fresh.append(None)
            return
        self._fresh.append(packet)

    def _prepare(self, frame: av.VideoFrame):
        """On the decoding thread: the detection image and the packets demuxed since the last frame."""
        if not self.skimming:
            return super()._prepare(frame)
        fresh, self._fresh = self._fresh, []
        return super()._prepare(frame), fresh

    def _take(self, fresh: list[av.Packet | None]) -> None:
        """On the reader's thread: account for the packets the decoding thread demuxed."""
        for packet in fresh:
            if packet is None:
                self.stats.full = True
                continue
            self._packets.add(packet)  # a second look may need it ...
            if not packet.is_discard:  # ... but one the demuxer marks to discard (edit list) is never shown
                bisect.insort(self._pending, packet.pts)

    def _dropped_before(self, pts: int | None) -> list[int]:
        """PTS of the dropped frames shown before the frame at ``pts`` (and forget ``pts``)."""
        if pts is None:
            return []
        cut = bisect.bisect_left(self._pending, pts)
        gap, rest = self._pending[:cut], self._pending[cut:]
        self._pending = rest[1:] if rest and rest[0] == pts else rest
        return gap

    # ---- every frame, in order -------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        if not self.skimming:
            yield from super().__iter__()
            return
        self._at = (0, -1.0)  # (index, time) of the next frame to yield
        self._time_base = self._stream.time_base
        k = max(3, round(_DETECTOR.window_s * (self.info.fps if self.info.fps > 0 else 25.0)))
        self._k = k
        held: list[_Ref] = []
        for av_frame, (small, fresh) in self._all_frames():
            self._take(fresh)
            gap = self._dropped_before(av_frame.pts)
            index = held[-1].index + len(gap) + 1 if held else 0
            ref = _Ref(av_frame, small, is_black(small[:, :, 0]), gap, index, _histogram(small))
            self.stats.decoded += 1
            if held:
                ref.change = _change(held[-1].small, small)
                ref.hist_step = hist_distance(held[-1].hist, ref.hist)
            else:
                yield from self._emit(None, ref)
            held.append(ref)
            if len(held) >= 3:
                self._decide(held[-3], held[-2], held[-1])
            self._gradual(held)
            # held[1]'s gap can no longer change once the widest window of the gradual rules has passed it
            while len(held) >= 4 and held[1].index < held[-1].index - 8 * k:
                yield from self._emit(held[0], held[1])
                held.pop(0)
                self._packets.trim(held[0].av_frame.pts if held[0].av_frame.pts is not None else 0)
        self._take(self._fresh)  # packets after the last frame out (the decoding thread has ended)
        self._fresh = []
        yield from self._flush(held)
        self._finish(*self._at)

    def _gradual(self, held: list[_Ref]) -> None:
        """Decode in full the window of a possible gradual transition: where, as the detector
        asks (at half-windows ``K`` and ``2K``), the histogram changes across ``t-K .. t+K``
        (by :data:`GRADUAL_SHARE` of its threshold, not in one step) while the sides
        ``t-2K .. t-K`` and ``t+K .. t+2K`` change much less. The newest frame is ``t+2K``."""
        new = held[-1]
        for k in (self._k, 2 * self._k):
            points = [self._ref_at(held, new.index - d * k) for d in (4, 3, 1)]
            if None in points:
                continue
            start, a, b = points
            change = hist_distance(a.hist, b.hist)
            if change < GRADUAL_SHARE * _DETECTOR.gradual_threshold:
                continue
            sides = max(hist_distance(start.hist, a.hist), hist_distance(b.hist, new.hist))
            steps = max(r.hist_step for r in held if a.index < r.index <= b.index)
            if sides <= SIDES * change and steps < 0.5 * change:
                # the frames the detector's tests read: the window's ends and middle, +-PEAK_REACH
                points = (new.index - 3 * k, new.index - 2 * k, new.index - k)
                for r in held:
                    first = r.index - len(r.gap)
                    if r.gap and any(first - PEAK_REACH <= x <= r.index - 1 + PEAK_REACH for x in points):
                        r.refine = True

    @staticmethod
    def _ref_at(held: list[_Ref], index: int) -> _Ref | None:
        """The newest held reference frame at or before frame ``index``."""
        at = bisect.bisect_right(held, index, key=lambda r: r.index)  # held is in frame order
        return held[at - 1] if at and index >= 0 else None

    def _decide(self, before: _Ref, ref: _Ref, after: _Ref) -> None:
        """Whether ``ref``'s gap (and the gaps beside it) must be decoded for real."""
        steps = len(ref.gap) + 1
        usual = (before.change / (len(before.gap) + 1) + after.change / (len(after.gap) + 1)) / 2 * steps
        spike = ref.change >= YUV_FLOOR and ref.change >= SPIKE * usual
        if ref.gap and (ref.black != before.black or spike):
            ref.refine = True
            before.refine = before.refine or bool(before.gap)
            after.refine = after.refine or bool(after.gap)

    def _flush(self, held: list[_Ref]) -> Iterator[Frame]:
        if len(held) >= 2:  # the last gap: no neighbour after it to compare with
            last = held[-1]
            last.refine = last.refine or last.change >= YUV_FLOOR or last.black != held[-2].black
        for prev, ref in zip(held, held[1:]):
            yield from self._emit(prev, ref)
        trailing, self._pending = self._pending, []  # dropped frames shown after the last reference frame
        if trailing and not self.truncated and held:
            decoded = self._replay(set(trailing), held[-1].av_frame.pts)
            for pts in trailing:
                if pts in decoded:
                    self.stats.refined += 1
                    yield self._frame(decoded[pts])

    def _emit(self, prev: _Ref | None, ref: _Ref) -> Iterator[Frame]:
        """The frames of ``ref``'s gap, then ``ref`` itself."""
        if ref.gap and prev is not None:
            decoded = self._refined(prev, ref) if ref.refine or self._give_up else {}
            self._check_worth()
            for n, pts in enumerate(ref.gap, start=1):
                if pts in decoded:
                    self.stats.refined += 1
                    yield self._frame(decoded[pts])
                else:
                    self.stats.blended += 1
                    w = n / (len(ref.gap) + 1)
                    yield self._next(pts, cv2.addWeighted(prev.small, 1 - w, ref.small, w, 0), None)
        elif ref.gap:  # dropped frames before the first decoded one (a broken start)
            log.debug("%s: %d frames before the first decoded one ignored", self.path, len(ref.gap))
        yield self._next(ref.av_frame.pts, ref.small, ref.av_frame)

    def _check_worth(self) -> None:
        """Decode every frame from here (as the codec allows it) once the second looks have
        decoded more than :data:`WORTH` times the frames the first pass dropped: on footage
        dense with boundaries and long GOPs (each look replays from a keyframe) skimming costs
        more than it saves. Counted in frames, so the choice does not depend on the machine."""
        dropped = self.stats.blended + self.stats.refined
        if dropped >= WORTH_AFTER and self.stats.redecoded > WORTH * dropped and not self._give_up:
            log.info("%s: the second looks cost more than skimming saves; decoding every frame from here",
                     self.path)
            self._give_up = True  # from the next gap on, every dropped frame is decoded (by a second look
            # until the decoding thread, a few frames ahead, has switched): the same frames, however late

    def _next(self, pts: int | None, small: np.ndarray, av_frame: av.VideoFrame | None) -> Frame:
        index, last_time = self._at
        frame = Frame(index, self._time_at(pts, index, last_time), small, av_frame, self.info.rotation)
        self._at = (index + 1, frame.time_s)
        return frame

    def _frame(self, av_frame: av.VideoFrame) -> Frame:
        return self._next(av_frame.pts, small_yuv(av_frame, self.detect_width), av_frame)

    def _time_at(self, pts: int | None, index: int, last_time: float) -> float:
        step = 1.0 / self.info.fps if self.info.fps > 0 else 0.04
        if pts is None:
            return last_time + step if index else 0.0
        tb = self._time_base
        time_s = pts * tb.numerator / tb.denominator - self._t0  # float(pts * tb), without a Fraction per frame
        return time_s if time_s > last_time else last_time + step

    # ---- second look: replay from the keyframe ---------------------------------
    def _refined(self, prev: _Ref, ref: _Ref) -> dict[int, av.VideoFrame]:
        wanted = set(ref.gap)
        self._cache = {pts: f for pts, f in self._cache.items() if pts > prev.av_frame.pts}
        if not wanted <= self._cache.keys():
            self._cache.update(self._replay(wanted, prev.av_frame.pts))
        return {pts: self._cache.pop(pts) for pts in ref.gap if pts in self._cache}

    def _replay(self, wanted: set[int], after_pts: int) -> dict[int, av.VideoFrame]:
        """Decode the dropped frames ``wanted`` (shown after ``after_pts``) with the second
        decoder: it goes on from where it stopped when it has not passed them, else starts
        again at the keyframe before. It decodes reference frames and the wanted ones only,
        and every frame after the last wanted one until those come out (the next gaps may
        want them)."""
        numbers = [self._packets.number[p] for p in wanted if p in self._packets.number]
        if not numbers:
            return {}
        first, last = min(numbers), max(numbers)
        ctx = self._replay_context()
        buffered = self._packets.items[0][0] if self._packets.items else self._packets.count
        start = self._packets.start_for(after_pts)
        # start again at the keyframe when it has passed the frames, or when the keyframe is
        # nearer than where it stopped (fewer reference frames to decode on the way)
        if self._b_next is None or self._b_next > first or self._b_next < max(buffered, start):
            ctx.flush_buffers()
            self._b_next = start
            self.stats.replays += 1
        out: dict[int, av.VideoFrame] = {}
        try:
            for n, packet in self._packets.since(self._b_next):
                ctx.skip_frame = "DEFAULT" if packet.pts in wanted or n > last else "NONREF"
                frames = ctx.decode(packet)
                self.stats.redecoded += len(frames)
                out.update((f.pts, f) for f in frames)
                self._b_next = n + 1
                if wanted <= out.keys():
                    return out
            frames = ctx.decode(None)
            self.stats.redecoded += len(frames)
            out.update((f.pts, f) for f in frames)  # drain: this decoder starts again next time
        except _DECODE_ERRORS as ex:
            log.warning("%s: second look failed (%s); blending instead", self.path, ex)
        ctx.flush_buffers()
        self._b_next = None
        return out

    def _replay_context(self):
        if self._replay_ctx is None:
            self._replay_container = av.open(str(self.path))
            stream = self._replay_container.streams.video[0]
            stream.thread_type = "SLICE"  # frame threads would not see the per-packet skip setting in order
            stream.thread_count = slice_threads(self.head) or 1  # one slice per frame: nothing to share
            stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": "all"}
            self._replay_ctx = stream.codec_context
        return self._replay_ctx

    def close(self) -> None:
        super().close()
        container, self._replay_container = getattr(self, "_replay_container", None), None
        self._replay_ctx = None
        if container is not None:
            container.close()


def _change(a: np.ndarray, b: np.ndarray) -> float:
    """The larger of the YUV and the luma-only difference (the detector uses luma alone
    between black-and-white frames)."""
    return max(pixel_distance(a, b), pixel_distance(cv2.extractChannel(a, 0), cv2.extractChannel(b, 0)))

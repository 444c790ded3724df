"""The ``vidconcept`` shot-boundary detector: cuts, dissolves, wipes and fades in one pass.

It is a PySceneDetect :class:`~scenedetect.SceneDetector` (``process_frame`` in,
boundary frame numbers out) that looks at small YUV frames and keeps a short
ring buffer of per-frame statistics, so every decision costs a few vectorised
numpy/OpenCV operations on a ~160x90 image and memory does not grow with the
video's length. Candidates are held until every rule has decided about their
frame (about 1.4 s), then accepted in frame order. The rules:

* **Hard cuts** -- the mean absolute YUV difference to the previous frame
  (luma alone between black-and-white frames, where chroma is empty) must
  spike to ``ratio`` times the average of its neighbours (AdaptiveDetector's
  rolling-average test, which keeps fast motion and whip pans from splitting
  a shot) and be large: above ``threshold`` over the whole frame, or over the
  part of the picture that moves (static tickers, logos, caption bars and
  letterbox bars do not dilute it), or by PySceneDetect's HSV ``content_val``
  with AdaptiveDetector's defaults (hue/saturation changes between dark shots).
  A candidate must also *persist*: the frames ``persist`` later must still
  differ from the frames before it, which rejects flashes, explosions and
  single-frame glitches.
* **Fades through black** -- a run of black frames (low mean and spread of
  luma) is bounded on both sides, so fade-out + black + fade-in becomes one
  transition and the black run itself becomes a separate, all-black segment
  that :class:`~vidconcept.video.shots.ShotScanner` drops (black is not a shot).
* **Dissolves and wipes** -- the colour histogram of frame ``t-K`` and ``t+K``
  differ a lot while each side is stable (the frames ``K`` further out change
  little): the "twin comparison" idea of Zhang, Kankanhalli & Smoliar,
  *Automatic partitioning of full-motion video* (Multimedia Systems 1993),
  tried at two window sizes for 20-60 frame transitions. The middle frame must
  be a blend of both sides (dissolve) or, pixel by pixel, one side or the
  other (a wipe or block mosaic sweeping across); back-to-back transitions
  may leave one side changing if the blend is clean. The boundary is put at
  the peak, i.e. the middle of the transition, and the transition's frames
  are recorded in ``gradual_spans`` so that no keyframe is taken from them.

Reference: Smeaton, Over & Doherty, *Video shot boundary detection: Seven years
of TRECVid activity* (CVIU 2010) for the taxonomy and the matching rule used
by :mod:`vidconcept.metrics.shots`.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np
from scenedetect import FrameTimecode, SceneDetector

log = logging.getLogger(__name__)

#: Luma (Y plane, video range 16-235) below which a frame's mean counts as black.
BLACK_MEAN = 24.0
#: ... provided the luma spread is also this small (a dark scene is not black).
BLACK_STD = 10.0
#: Largest residual/spread ratio for the middle of a dissolve (see ``_nonlinearity``).
LINEARITY = 0.4
#: Chroma spread (standard deviation of U and V) below which a frame is black-and-white.
GREY_CHROMA_STD = 1.5
#: Least HSV content_val of a hard cut (AdaptiveDetector's ``min_content_val``).
HSV_MIN = 15.0
#: Least YUV difference of a cut found by the HSV cue (compression noise is below it).
YUV_FLOOR = 3.0
#: A cut's YUV difference is measured on the moving part of the picture when that
#: part is at least this share of it (static overlays seldom cover more than half).
MIN_MOVING_SHARE = 0.4
#: Half-window multiples at which gradual transitions are looked for.
SCALES = (1, 2)
#: Largest residual/spread ratio for a dissolve with one side already changing (back-to-back transitions).
CHAINED_LINEARITY = 0.32
#: A gradual candidate is the peak when no neighbour's change exceeds its own by more than this share.
PEAK_SLACK = 0.02
#: Largest wipe residual (see ``_wipe_residual``) for the middle of a wipe.
WIPE = 0.25
#: A hard cut whose frame difference is this many times ``threshold`` is kept closer than
#: ``min_scene_len`` to the previous boundary (montages cut every few frames; a weak cut that
#: near is more often motion). Fitted on the dev clips (a social edit and a film trailer
#: whose shots last 2-12 frames; benchmarks/shots.py).
STRONG_CUT = 2.0
#: ... but never closer than this many frames.
MIN_GAP = 2
#: Histogram bins for Y, U, V; the histogram is normalised to sum 1 per channel.
_HIST_BINS = (32, 16, 16)


@dataclass
class _FrameStats:
    """What the detector remembers about one frame."""

    index: int
    small: np.ndarray  # uint8 YUV, for pixel differences
    hist: np.ndarray  # concatenated Y/U/V histograms, each summing to 1
    black: bool
    grey: bool  # black-and-white: no chroma
    diff: float = 0.0  # mean |YUV| difference to the previous frame (|Y| between grey frames)
    # the previous frame while this one is in the detector's buffer (not the oldest one there)
    prev: _FrameStats | None = field(default=None, repr=False)
    _hsv: np.ndarray | None = field(default=None, repr=False)
    _hsv_diff: float | None = field(default=None, repr=False)

    @property
    def hsv(self) -> np.ndarray:
        """uint8 HSV, for the colour cue of hard cuts (computed when a cut is weighed: rarely)."""
        if self._hsv is None:
            self._hsv = to_hsv(self.small)
        return self._hsv

    @property
    def hsv_diff(self) -> float:
        """Mean |HSV| difference to the previous frame (PySceneDetect's content_val)."""
        if self._hsv_diff is None:
            self._hsv_diff = pixel_distance(self.hsv, self.prev.hsv) if self.prev is not None else 0.0
        return self._hsv_diff


def _histogram(yuv: np.ndarray) -> np.ndarray:
    parts = [cv2.calcHist([yuv], [c], None, [bins], [0, 256]).ravel() for c, bins in enumerate(_HIST_BINS)]
    return np.concatenate(parts) / float(yuv.shape[0] * yuv.shape[1])


def hist_distance(a: np.ndarray, b: np.ndarray) -> float:
    """L1 distance of two Y/U/V histograms, scaled to 0 (same) .. 1 (disjoint)."""
    return float(np.abs(a - b).sum()) / (2 * len(_HIST_BINS))


def pixel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two YUV images (0..255)."""
    return cv2.norm(a, b, cv2.NORM_L1) / a.size


def to_hsv(yuv: np.ndarray) -> np.ndarray:
    """HSV of a small YUV frame (what ContentDetector/AdaptiveDetector measure)."""
    return cv2.cvtColor(cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR), cv2.COLOR_BGR2HSV_FULL)


def moving_share(frames: list[np.ndarray], floor: int = 6) -> float:
    """Share of pixels whose value changes by more than ``floor`` somewhere in ``frames``.

    Static overlays (tickers, logos, caption bars) and letterbox/pillarbox bars
    stay the same across a cut; dividing a frame difference by this share
    measures the change on the picture alone, so a cut between two dark shots
    under a broadcast overlay is not diluted by the third of the frame that
    never changes.
    """
    stack = np.stack(frames)
    spread = (stack.max(axis=0) - stack.min(axis=0)).max(axis=2)
    return max(float((spread > floor).mean()), 0.05)


def is_black(y: np.ndarray) -> bool:
    """Whether a luma image is (nearly) black: dark *and* without structure."""
    mean, std = cv2.meanStdDev(y)
    return bool(mean[0, 0] < BLACK_MEAN and std[0, 0] < BLACK_STD)


def frame_distance(a: _FrameStats, b: _FrameStats) -> float:
    """Mean absolute YUV difference; between black-and-white frames, of luma alone
    (chroma carries nothing there, and averaging it in would divide a cut by three)."""
    if a.grey and b.grey:
        return pixel_distance(cv2.extractChannel(a.small, 0), cv2.extractChannel(b.small, 0))
    return pixel_distance(a.small, b.small)


class TransitionDetector(SceneDetector):
    """Detects cuts, fades through black and dissolves; see the module docstring.

    Args:
        threshold: Minimum mean YUV difference (0-255) between two frames for a
            hard cut. Lower finds subtler cuts and more false ones.
        min_scene_len: Minimum shot length in seconds between two boundaries
            (boundaries of a black run are exempt: that run is dropped anyway).
        ratio: How many times larger than its neighbours a cut's difference must be.
        gradual_threshold: Minimum histogram distance (0-1) across a dissolve.
        window_s: Half-window ``K`` of the dissolve test, in seconds.
    """

    #: The frame format :class:`~vidconcept.video.shots.ShotScanner` must pass.
    FRAME_FORMAT = "yuv"

    def __init__(
        self,
        threshold: float = 12.0,
        min_scene_len: float = 0.5,
        ratio: float = 3.0,
        gradual_threshold: float = 0.18,
        window_s: float = 0.34,
    ):
        super().__init__()
        self.threshold, self.min_scene_len, self.ratio = threshold, min_scene_len, ratio
        self.gradual_threshold, self.window_s = gradual_threshold, window_s
        self.persist = 5  # frames; flashes are shorter than this
        self._k = 0  # dissolve half-window in frames, set from the frame rate
        self._min_len = 0
        self._buf: deque[_FrameStats] = deque()
        # frame numbers in the buffer of black frames and of steps as large as a cut's: what the
        # gradual test rules out, without scanning its window at every frame
        self._black: deque[int] = deque()
        self._jumps: deque[int] = deque()
        self._pending: list[tuple[int, str]] = []
        self._extent: dict[int, tuple[int, int]] = {}  # gradual candidate -> frames its window saw change
        self._strength: dict[int, float] = {}  # cut candidate -> its frame difference / threshold
        #: Frames ``(first, last)`` of the latest accepted gradual transitions: their
        #: mixed frames belong to neither shot, so no keyframe is taken from them.
        self.gradual_spans: deque[tuple[int, int]] = deque(maxlen=64)
        self._last_cut = -(10**9)  # last boundary emitted
        self._last_abrupt = -(10**9)  # last frame that was a hard cut or black edge
        self._last_gradual = -(10**9)  # peak of the last accepted gradual transition

    @property
    def event_buffer_length(self) -> int:
        return self._delay + 2

    @property
    def newest_stats(self) -> tuple[float, bool]:
        """(difference to the previous frame, black) of the newest frame, for detectors built on this one."""
        newest = self._buf[-1]
        return newest.diff, newest.black

    @property
    def _delay(self) -> int:
        """Frames between the newest frame and the oldest one still undecided."""
        return max(2 * SCALES[-1] * self._k, self.persist)

    def _setup(self, timecode: FrameTimecode) -> None:
        fps = float(timecode.frame_rate or 25.0)
        self._k = max(3, round(self.window_s * fps))
        self._min_len = max(0, round(self.min_scene_len * fps))

    def process_frame(self, timecode: FrameTimecode, frame_img: np.ndarray) -> list[FrameTimecode]:
        """Feed one small YUV frame; return boundaries decided so far (with a short delay)."""
        if not self._k:
            self._setup(timecode)
        self._push(timecode.frame_num, frame_img)
        self._pending += [*self._black_edges(), *self._cut_candidate(), *self._gradual_candidate()]
        return [FrameTimecode(f, fps=timecode) for f in self._release(timecode.frame_num - self._delay)]

    def post_process(self, timecode: FrameTimecode) -> list[FrameTimecode]:
        """Boundaries still pending at the end of the video."""
        return [FrameTimecode(f, fps=timecode) for f in self._release(None)]

    def _release(self, upto: int | None) -> list[int]:
        """Accept the pending candidates up to frame ``upto`` (all when ``None``), in frame order.

        Candidates are held until every test has decided about their frame, so
        a cut found late (shorter delay) never overtakes a dissolve just before
        it, and a gradual candidate near a cut or black edge yields to it.
        """
        pending = sorted(set(self._pending))
        ready = [c for c in pending if upto is None or c[0] <= upto]
        self._pending = [c for c in pending if upto is not None and c[0] > upto]
        abrupt = [f for f, kind in pending if kind != "gradual"]
        ready = [(f, kind) for f, kind in ready
                 if kind != "gradual" or not any(0 < a - f < 2 * self._k for a in abrupt)]
        return self._accept(ready)

    def _push(self, index: int, yuv: np.ndarray) -> None:
        small = np.ascontiguousarray(yuv)
        mean, std = cv2.meanStdDev(small)  # per plane: Y for black, U/V for black-and-white
        black = bool(mean[0, 0] < BLACK_MEAN and std[0, 0] < BLACK_STD)
        grey = bool(std[1:].max() < GREY_CHROMA_STD)
        stats = _FrameStats(index, small, _histogram(small), black, grey)
        if self._buf:
            stats.prev = self._buf[-1]
            stats.diff = frame_distance(stats, stats.prev)
        self._buf.append(stats)
        if black:
            self._black.append(index)
        if stats.diff >= self.threshold:
            self._jumps.append(index)
        while len(self._buf) > 4 * SCALES[-1] * self._k + 2:
            self._buf.popleft()
            self._buf[0].prev = None  # no chain of every frame seen; the cut test reads only recent ones
        for marks in (self._black, self._jumps):
            while marks and marks[0] < self._buf[0].index:
                marks.popleft()

    @staticmethod
    def _marked(first: int, last: int, marks: deque[int]) -> bool:
        """Whether a frame of ``first..last`` is in ``marks`` (frame numbers in the buffer, in order)."""
        return any(first <= m <= last for m in reversed(marks))

    def _black_edges(self) -> list[tuple[int, str]]:
        """A boundary where a black run starts or ends (at the newest frame)."""
        if len(self._buf) < 2:
            return []
        prev, cur = self._buf[-2], self._buf[-1]
        return [(cur.index, "black")] if prev.black != cur.black else []

    def _cut_candidate(self) -> list[tuple[int, str]]:
        """Decide about the frame ``persist`` frames back: is it a hard cut?"""
        p = self.persist
        if len(self._buf) < p + 3:
            return []
        buf = self._buf
        cand, before = buf[-1 - p], buf[-2 - p]
        if cand.black or before.black or not self._abrupt(cand, [buf[i] for i in (-3 - p, -2 - p, -p, 1 - p)]):
            return []
        earlier = [buf[i] for i in range(-2 - p, -6 - p, -1) if -i <= len(buf)]
        if not all(self._persists(e, cand, buf[-1]) for e in earlier):
            return []
        self._strength[cand.index] = cand.diff / self.threshold if self.threshold else float("inf")
        return [(cand.index, "cut")]

    def _abrupt(self, cand: _FrameStats, neighbours: list[_FrameStats]) -> bool:
        """A spike of the frame difference: ``ratio`` times its neighbours' and above threshold.

        The YUV difference must spike (``ratio`` times its neighbours'); then
        either cue suffices: the YUV difference measured on the moving part of
        the picture (see :func:`moving_share`) reaching ``threshold``, or
        PySceneDetect's HSV ``content_val`` passing AdaptiveDetector's defaults
        (ratio 3, at least 15), which keeps hue/saturation changes between dark
        shots visible.
        """
        yuv_near = sum(n.diff for n in neighbours) / len(neighbours)
        if cand.diff < self.ratio * yuv_near:
            return False  # no spike in the picture (hue alone flickers on grey, low-saturation areas)
        if cand.diff >= self.threshold:
            return True
        if cand.diff >= YUV_FLOOR and cand.hsv_diff >= HSV_MIN:  # HSV only now: it is seldom needed
            if cand.hsv_diff >= self.ratio * sum(n.hsv_diff for n in neighbours) / len(neighbours):
                return True
        if cand.diff < self.threshold * MIN_MOVING_SHARE:
            return False
        window = [f.small for f in self._buf if abs(f.index - cand.index) <= self.persist]
        return cand.diff / max(moving_share(window), MIN_MOVING_SHARE) >= self.threshold

    @staticmethod
    def _persists(before: _FrameStats, cand: _FrameStats, later: _FrameStats) -> bool:
        """The change from ``before`` is still there a few frames on.

        Checked against each of the few frames before the candidate, so the
        end of a flash (whose previous frame is the bright one) is rejected too.
        """
        pix = frame_distance(before, later) >= 0.5 * cand.diff
        hist = hist_distance(before.hist, later.hist) >= 0.5 * hist_distance(before.hist, cand.hist)
        return pix and hist

    def _gradual_candidate(self) -> list[tuple[int, str]]:
        """Decide about the frame ``2 * scale * K`` back: the peak of a gradual transition?

        Tried at half-windows ``K`` and ``2K`` so that transitions longer than
        the short window (20-60 frame dissolves, slow wipes) still show stable
        sides; the first scale that accepts wins.
        """
        buf = list(self._buf)
        for scale in SCALES:
            k, lag = scale * self._k, self._lag(scale)
            if len(buf) < lag + 4 * k + 1:
                continue
            window = buf[len(buf) - lag - 4 * k - 1 : len(buf) - lag]
            if self._is_gradual(window, k):
                centre = window[2 * k].index
                self._extent[centre] = (centre - k, centre + k)
                return [(centre, "gradual")]
        return []

    def _lag(self, scale: int) -> int:
        """How many frames the window of ``scale`` ends before the newest one, so every
        scale decides about the same frame."""
        return 2 * (SCALES[-1] - scale) * self._k

    def _is_gradual(self, window: list[_FrameStats], k: int) -> bool:
        if len(window) < 4 * k + 1:
            return False
        change = self._span_change(window, 2 * k, k)
        if change < self.gradual_threshold:  # tested first: most frames end here, before the scans below
            return False
        if self._marked(window[0].index, window[-1].index, self._black) or \
                self._marked(window[1].index, window[-1].index, self._jumps):
            return False  # a black frame or a cut-sized step inside: not a gradual transition
        mid = window[2 * k]
        if max(self._span_change(window, 2 * k + d, k) for d in (-2, -1, 1, 2)) > change * (1 + PEAK_SLACK):
            return False  # not the peak (a transition shorter than the window gives a plateau: any of it will do)
        before = hist_distance(window[0].hist, window[k].hist)
        after = hist_distance(window[3 * k].hist, window[4 * k].hist)
        a, b = window[k].small, window[3 * k].small
        if max(before, after) <= 0.5 * change:
            # A dissolve's middle is a blend of both sides; a wipe's middle is, pixel by pixel, one side or the other.
            return self._nonlinearity(a, mid.small, b) <= LINEARITY or self._wipe_residual(a, mid.small, b) <= WIPE
        if min(before, after) <= 0.25 * change and max(before, after) <= 0.6 * change:
            # Chained transitions: the next (or previous) one already changes one side; ask for a cleaner blend.
            return self._nonlinearity(a, mid.small, b) <= CHAINED_LINEARITY
        return False  # the content keeps changing: motion, not a transition

    @staticmethod
    def _wipe_residual(a: np.ndarray, mid: np.ndarray, b: np.ndarray) -> float:
        """How far ``mid`` is from the nearer of ``a`` and ``b`` where they differ, relative
        to their difference, and 1.0 unless ``mid`` is part one and part the other.

        A wipe (an edge or blocks sweeping across the frame) leaves each pixel of
        its middle frame equal to one side: ratio near 0 with a share of both
        sides. Motion moves edges to places where neither side has them (ratio
        0.4 and above), and a dissolve is near neither side (about 0.5).
        """
        spread = cv2.absdiff(a, b).max(axis=2)
        changed = spread > 20
        if changed.mean() < 0.2:
            return 1.0
        to_a = cv2.absdiff(mid, a).max(axis=2)[changed]
        to_b = cv2.absdiff(mid, b).max(axis=2)[changed]
        share_b = float((to_b < to_a).mean())
        if not 0.15 <= share_b <= 0.85:
            return 1.0
        return float(np.minimum(to_a, to_b).mean()) / float(spread[changed].mean())

    @staticmethod
    def _nonlinearity(a: np.ndarray, mid: np.ndarray, b: np.ndarray) -> float:
        """How far ``mid`` is from the average of ``a`` and ``b``, relative to ``|a - b|``.

        A dissolve mixes the two shots linearly, so its middle frame is close to
        the mean of frames on either side (ratio near 0); camera or object motion
        moves edges instead, leaving the ratio near 0.5 or above.
        """
        spread = pixel_distance(a, b)
        a16, mid16, b16 = (x.astype(np.int16) for x in (a, mid, b))
        residual = float(np.abs(2 * mid16 - a16 - b16).mean()) / 2
        return residual / spread if spread > 0 else 1.0

    @staticmethod
    def _span_change(window: list[_FrameStats], centre: int, k: int) -> float:
        lo, hi = max(0, centre - k), min(len(window) - 1, centre + k)
        return hist_distance(window[lo].hist, window[hi].hist)

    def _same_transition(self, frame: int) -> bool:
        """Whether a gradual candidate is the last accepted transition seen again: its frames
        overlap that one's, or follow within ``K`` frames while the picture between the two
        peaks is still one blend (a dissolve longer than the window peaks twice; back-to-back
        dissolves have a clean shot between them). The span then grows to cover both."""
        if not self.gradual_spans:
            return False
        extent, (first, last) = self._extent[frame], self.gradual_spans[-1]
        if extent[0] > last and (extent[0] - last > self._k or not self._one_blend(self._last_gradual, frame)):
            return False
        self.gradual_spans[-1] = (first, max(last, extent[1]))
        return True

    def _one_blend(self, a: int, b: int) -> bool:
        """Whether the frame halfway between frames ``a`` and ``b`` is their mix (both still in the buffer)."""
        by_index = {f.index: f.small for f in self._buf}
        mid = by_index.get((a + b) // 2)
        if a not in by_index or b not in by_index or mid is None:
            return False
        return self._nonlinearity(by_index[a], mid, by_index[b]) <= LINEARITY

    def _accept(self, candidates: list[tuple[int, str]]) -> list[int]:
        """Order candidates, apply the minimum shot length, drop duplicates."""
        accepted = []
        for frame, kind in sorted(candidates):
            if frame <= self._last_cut:
                continue
            if kind == "gradual" and self._same_transition(frame):
                continue
            if kind == "gradual" and frame - self._last_abrupt < 2 * self._k:
                continue
            if kind != "black" and frame - self._last_cut < self._min_len and not self._montage(frame, kind):
                continue
            if kind != "gradual":
                self._last_abrupt = frame
            else:
                self.gradual_spans.append(self._extent[frame])
                self._last_gradual = frame
            self._last_cut = frame
            accepted.append(frame)
        for frame in [f for f in self._extent if f <= self._last_cut]:
            del self._extent[frame]
        for frame in [f for f in self._strength if f <= self._last_cut]:
            del self._strength[frame]
        return accepted

    def _montage(self, frame: int, kind: str) -> bool:
        """Whether a cut closer than the minimum shot length is strong enough to stand (:data:`STRONG_CUT`)."""
        return kind == "cut" and frame - self._last_cut >= MIN_GAP and self._strength.get(frame, 0.0) >= STRONG_CUT

"""The ``vidconcept`` shot-boundary detector: cuts, dissolves and fades in one pass.

It is a PySceneDetect :class:`~scenedetect.SceneDetector` (``process_frame`` in,
boundary frame numbers out) that looks at small YUV frames and keeps a short
ring buffer of per-frame statistics, so every decision costs a few vectorised
numpy/OpenCV operations on a ~160x90 image and memory does not grow with the
video's length. Three rules, each the classic answer to one transition kind:

* **Hard cuts** -- the mean absolute YUV difference to the previous frame (the
  ``content_val`` of PySceneDetect's ContentDetector, in YUV) must exceed an
  absolute ``threshold`` *and* ``ratio`` times the average of its neighbours,
  which is the rolling-average test of AdaptiveDetector and what keeps fast
  motion from splitting a shot. A candidate must also *persist*: the frame
  ``persist`` frames later must still differ from the last frame before the
  candidate, which rejects camera flashes and single-frame glitches.
* **Fades through black** -- a run of black frames (low mean and spread of
  luma) is bounded on both sides, so fade-out + black + fade-in becomes one
  transition and the black run itself becomes a separate, all-black segment
  that :class:`~vidconcept.video.shots.ShotScanner` drops (black is not a shot).
* **Dissolves** (and other gradual changes such as wipes) -- the colour
  histogram of frame ``t-K`` and ``t+K`` differ a lot while each side is
  stable (the frames ``K`` further out change little): the "twin comparison"
  idea of Zhang, Kankanhalli & Smoliar, *Automatic partitioning of full-motion
  video* (Multimedia Systems 1993) expressed with a fixed window. The boundary
  is put at the peak, i.e. the middle of the transition.

Reference: Smeaton, Over & Doherty, *Video shot boundary detection: Seven years
of TRECVid activity* (CVIU 2010) for the taxonomy and the matching rule used
by :mod:`vidconcept.metrics.shots`.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

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
#: Histogram bins for Y, U, V; the histogram is normalised to sum 1 per channel.
_HIST_BINS = (32, 16, 16)


@dataclass
class _FrameStats:
    """What the detector remembers about one frame."""

    index: int
    small: np.ndarray  # int16 YUV, for pixel differences
    hist: np.ndarray  # concatenated Y/U/V histograms, each summing to 1
    black: bool
    diff: float = 0.0  # mean |YUV| difference to the previous frame


def _histogram(yuv: np.ndarray) -> np.ndarray:
    parts = [cv2.calcHist([yuv], [c], None, [bins], [0, 256]).ravel() for c, bins in enumerate(_HIST_BINS)]
    return np.concatenate(parts) / float(yuv.shape[0] * yuv.shape[1])


def hist_distance(a: np.ndarray, b: np.ndarray) -> float:
    """L1 distance of two Y/U/V histograms, scaled to 0 (same) .. 1 (disjoint)."""
    return float(np.abs(a - b).sum()) / (2 * len(_HIST_BINS))


def pixel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two int16 YUV images (0..255)."""
    return float(cv2.absdiff(a, b).mean())


def is_black(y: np.ndarray) -> bool:
    """Whether a luma image is (nearly) black: dark *and* without structure."""
    mean, std = cv2.meanStdDev(y)
    return bool(mean[0, 0] < BLACK_MEAN and std[0, 0] < BLACK_STD)


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
        self._last_cut = -(10**9)  # last boundary emitted
        self._last_abrupt = -(10**9)  # last frame that was a hard cut or black edge

    @property
    def event_buffer_length(self) -> int:
        return max(2 * self._k, self.persist) + 2

    def _setup(self, timecode: FrameTimecode) -> None:
        fps = float(timecode.frame_rate or 25.0)
        self._k = max(3, round(self.window_s * fps))
        self._min_len = max(0, round(self.min_scene_len * fps))

    def process_frame(self, timecode: FrameTimecode, frame_img: np.ndarray) -> list[FrameTimecode]:
        """Feed one small YUV frame; return boundaries decided so far (with a short delay)."""
        if not self._k:
            self._setup(timecode)
        self._push(timecode.frame_num, frame_img)
        frames = [*self._black_edges(), *self._cut_candidate(), *self._gradual_candidate()]
        return [FrameTimecode(f, fps=timecode) for f in self._accept(frames)]

    def _push(self, index: int, yuv: np.ndarray) -> None:
        small = yuv.astype(np.int16)
        stats = _FrameStats(index, small, _histogram(yuv), is_black(yuv[:, :, 0]))
        if self._buf:
            stats.diff = pixel_distance(small, self._buf[-1].small)
        self._buf.append(stats)
        while len(self._buf) > 4 * self._k + 2:
            self._buf.popleft()

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
        if cand.black or before.black or cand.diff < self.threshold:
            return []
        neighbours = [buf[i].diff for i in (-3 - p, -2 - p, -p, 1 - p)]
        if cand.diff < self.ratio * (sum(neighbours) / len(neighbours)):
            return []
        earlier = [buf[i] for i in range(-2 - p, -6 - p, -1) if -i <= len(buf)]
        if not all(self._persists(e, cand, buf[-1]) for e in earlier):
            return []
        return [(cand.index, "cut")]

    @staticmethod
    def _persists(before: _FrameStats, cand: _FrameStats, later: _FrameStats) -> bool:
        """The change from ``before`` is still there a few frames on.

        Checked against each of the few frames before the candidate, so the
        end of a flash (whose previous frame is the bright one) is rejected too.
        """
        pix = pixel_distance(before.small, later.small) >= 0.5 * cand.diff
        hist = hist_distance(before.hist, later.hist) >= 0.5 * hist_distance(before.hist, cand.hist)
        return pix and hist

    def _gradual_candidate(self) -> list[tuple[int, str]]:
        """Decide about the frame ``2K`` back: the peak of a gradual transition?"""
        k, buf = self._k, self._buf
        if len(buf) < 4 * k + 1:
            return []
        window = list(buf)[-4 * k - 1 :]
        if any(f.black for f in window) or max(f.diff for f in window[1:]) >= self.threshold:
            return []
        mid = window[2 * k]
        change = self._span_change(window, 2 * k)
        if change < self.gradual_threshold:
            return []
        if max(self._span_change(window, 2 * k + d) for d in (-2, -1, 1, 2)) > change:
            return []  # not the peak
        before = hist_distance(window[0].hist, window[k].hist)
        after = hist_distance(window[3 * k].hist, window[4 * k].hist)
        if max(before, after) > 0.5 * change:
            return []  # the content keeps changing: motion, not a transition
        if self._nonlinearity(window[k].small, mid.small, window[3 * k].small) > LINEARITY:
            return []  # the middle is not a blend of both sides: motion, not a mix
        return [(mid.index, "gradual")]

    @staticmethod
    def _nonlinearity(a: np.ndarray, mid: np.ndarray, b: np.ndarray) -> float:
        """How far ``mid`` is from the average of ``a`` and ``b``, relative to ``|a - b|``.

        A dissolve mixes the two shots linearly, so its middle frame is close to
        the mean of frames on either side (ratio near 0); camera or object motion
        moves edges instead, leaving the ratio near 0.5 or above.
        """
        spread = float(cv2.absdiff(a, b).mean())
        residual = float(np.abs(2 * mid - a - b).mean()) / 2
        return residual / spread if spread > 0 else 1.0

    def _span_change(self, window: list[_FrameStats], centre: int) -> float:
        k = self._k
        lo, hi = max(0, centre - k), min(len(window) - 1, centre + k)
        return hist_distance(window[lo].hist, window[hi].hist)

    def _accept(self, candidates: list[tuple[int, str]]) -> list[int]:
        """Order candidates, apply the minimum shot length, drop duplicates."""
        accepted = []
        for frame, kind in sorted(candidates):
            if frame <= self._last_cut:
                continue
            if kind == "gradual" and frame - self._last_abrupt < 2 * self._k:
                continue
            if kind != "black" and frame - self._last_cut < self._min_len:
                continue
            if kind != "gradual":
                self._last_abrupt = frame
            self._last_cut = frame
            accepted.append(frame)
        return accepted

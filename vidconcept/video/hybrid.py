"""Shot detectors built on TransNetV2: the network alone, and the network where cheap cues flag.

:class:`TransNetDetector` (``--detector transnetv2``) runs the network on every frame and
turns each run of frames above ``threshold`` into one boundary, as the published
inference does (``predictions_to_scenes``); runs of 3 frames or more are gradual
transitions, whose frames get no keyframe.

:class:`HybridDetector` (``--detector hybrid``) runs our cheap detector
(:class:`~vidconcept.video.transitions.TransitionDetector`) and asks the network only about
what the cues are unsure of: their weaker cuts, their dissolves and wipes, and spikes of the
frame difference they did not report. The network is the arbiter there (:class:`HybridRule`);
strong cuts and black edges stand on the cues' evidence alone (the network misses some
black-and-white cuts); a transition the network finds where it was asked is added. On CPU it
runs on 48-frame windows centred on those frames only; on a GPU (``every_frame``) on every
frame, and the same rule decides.

The two detectors fail on different transitions (issue 32: the network misses some
black-and-white cuts and dissolves, the cues split shots on camera motion), which is why
the rule combines them rather than picking one.

Example::

    detect_shots("clip.mp4", detector="hybrid")        # CPU: windows only
    HybridDetector(every_frame=True, device="cuda")    # the network on every frame
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scenedetect import FrameTimecode, SceneDetector

from vidconcept.video.transitions import STRONG_CUT, TransitionDetector
from vidconcept.video.transnet import STEP, WINDOW, WindowedTransNet, load_transnet, transnet_frame

log = logging.getLogger(__name__)

#: A run of at least this many frames above threshold is a gradual transition.
GRADUAL_RUN = 3
#: Frames either side of a cue's cut in which the network's peak is looked for.
REACH = 3


@dataclass
class _Run:
    """Consecutive frames whose probability is above threshold."""

    first: int
    last: int
    peak: int
    peak_p: float

    @property
    def boundary(self) -> int:
        """First frame of the new shot: the network marks the last frame of the old one."""
        return min(self.peak + 1, self.last + 1) if self.gradual else self.peak + 1

    @property
    def gradual(self) -> bool:
        return self.last - self.first + 1 >= GRADUAL_RUN


@dataclass
class _RunScanner:
    """Feeds frames' probabilities in order; hands out each finished run."""

    threshold: float
    run: _Run | None = None

    def feed(self, frame: int, p: float) -> _Run | None:
        if p > self.threshold:
            if self.run is None:
                self.run = _Run(frame, frame, frame, p)
            else:
                self.run.last = frame
                if p > self.run.peak_p:
                    self.run.peak, self.run.peak_p = frame, p
            return None
        done, self.run = self.run, None
        return done


class TransNetDetector(SceneDetector):
    """TransNetV2 on every frame (see the module docstring).

    Args:
        threshold: Probability above which a frame is part of a transition (published: 0.5).
        min_scene_len: Unused (the network needs none); accepted so ``--min-shot`` is harmless.
        device: Torch device; ``None``: ``$TORCH_DEVICE``, else CUDA when present, else CPU.
        batch: Windows per forward pass (``None``: 8 on CUDA, 1 on CPU).
    """

    FRAME_FORMAT = "yuv"

    def __init__(self, threshold: float = 0.5, min_scene_len: float = 0.0, device: str | None = None,
                 batch: int | None = None):
        super().__init__()
        net = load_transnet(device)
        self.tiles = WindowedTransNet(net, batch=batch or (8 if net.device.startswith("cuda") else 1))
        self._scanner = _RunScanner(threshold)
        self._next = 0  # next frame whose probability is scanned
        self.gradual_spans: deque[tuple[int, int]] = deque(maxlen=64)

    @property
    def event_buffer_length(self) -> int:
        return WINDOW + STEP

    def process_frame(self, timecode: FrameTimecode, frame_img: np.ndarray) -> list[FrameTimecode]:
        self.tiles.add(timecode.frame_num, transnet_frame(frame_img))
        first = self.tiles.window_of(self._next)
        ready = [w for w in range(first, first + 8) if self.tiles.ready(w)]
        if len(ready) >= self.tiles.batch:
            self.tiles.compute(ready)
        return [FrameTimecode(f, fps=timecode) for f in self._scan()]

    def post_process(self, timecode: FrameTimecode) -> list[FrameTimecode]:
        self.tiles.finish()
        self.tiles.compute(range(self.tiles.window_of(self._next), self.tiles.windows_total()))
        found = self._scan()
        last = self._scanner.feed(self.tiles.end, 0.0)
        return [FrameTimecode(f, fps=timecode) for f in found + ([self._accept(last)] if last else [])]

    def _scan(self) -> list[int]:
        found = []
        while (p := self.tiles.prob(self._next)) is not None:
            run = self._scanner.feed(self._next, p)
            if run is not None:
                found.append(self._accept(run))
            self._next += 1
        self.tiles.forget_before(self._next)
        return found

    def _accept(self, run: _Run) -> int:
        if run.gradual:
            self.gradual_spans.append((run.first, run.last))
        return run.boundary


@dataclass(frozen=True)
class HybridRule:
    """How the cues' candidates and the network's probabilities make boundaries.

    The network is the arbiter of what the cues are unsure of, and the cues point it at
    what they half-see:

    * a cue's cut at least ``sure`` times the cue threshold stands (no network run: most
      cuts, and the black-and-white cuts the network misses); a weaker one stands only if the
      network's probability within ``REACH`` frames reaches ``confirm`` (camera motion and
      flashes split shots in the cues, seldom in the network);
    * a cue's dissolve or wipe stands if the network reaches ``confirm_gradual`` inside it
      (only a network that sees nothing there vetoes it);
    * a spike of the frame difference the cues did not report (``suspect`` times their
      threshold, twice its neighbours) is shown to the network: a run of it above ``add``
      is a boundary, and so is the spike itself when it is a strong, sharp one (``sure``
      times the threshold, the cues' ``ratio`` times its neighbours) that persists (not a
      flash) and that the network half-sees (``agree``): two weak pieces of evidence that agree;
    * black edges stand; a run of the network above ``add`` anywhere it ran is added.

    Fitted on the dev clips only (``benchmarks/fit_hybrid.py``; held-out clips never read):
    F1 is flat for ``confirm`` 0.3-0.5, ``agree`` 0.1-0.2 and ``confirm_gradual`` 0.02-0.5; ``sure`` = 2
    (the cues' own :data:`~vidconcept.video.transitions.STRONG_CUT`) is the best of 1.5/2/3/never;
    ``suspect`` 0.5 finds one more dev transition on CPU than 1.0, at more network runs.
    """

    confirm: float = 0.3
    confirm_gradual: float = 0.05
    sure: float = STRONG_CUT
    add: float = 0.5
    agree: float = 0.15
    suspect: float = 1.0


#: The rule of :class:`HybridDetector` (see :class:`HybridRule`).
DEFAULT_RULE = HybridRule()


@dataclass
class _Candidate:
    frame: int
    kind: str  # "cut", "gradual", "black" or "spike" (a spike of the difference the cues did not report)
    diff: float
    span: tuple[int, int] | None = None
    sharp: bool = False  # a spike: the cues' ``ratio`` times its neighbours


@dataclass
class _Frames:
    """What the hybrid remembers per recent frame from the cues."""

    diff: dict[int, float] = field(default_factory=dict)
    black: dict[int, bool] = field(default_factory=dict)
    spikes: dict[int, bool] = field(default_factory=dict)  # frame -> sharp

    def forget_before(self, frame: int) -> None:
        for store in (self.diff, self.black, self.spikes):
            for i in [i for i in store if i < frame]:
                del store[i]


class HybridDetector(SceneDetector):
    """Cheap cues everywhere, TransNetV2 where they are unsure (see the module docstring).

    On CPU the network runs only on short windows (:meth:`WindowedTransNet.probe`) around the
    cues' weak cuts, their dissolves and wipes, and the spikes they did not report; with
    ``every_frame`` (a GPU) it runs on every frame and the same rule decides.

    Args:
        threshold: The cues' cut threshold (see :class:`TransitionDetector`).
        min_scene_len: The cues' minimum shot length in seconds.
        device: Torch device for the network (``None``: see :func:`load_transnet`).
        every_frame: Run the network on every window; ``None``: only on CUDA.
        rule: How the two are combined (default :data:`DEFAULT_RULE`, fitted on dev clips).
    """

    FRAME_FORMAT = "yuv"

    def __init__(self, threshold: float = 12.0, min_scene_len: float = 0.25, device: str | None = None,
                 every_frame: bool | None = None, rule: HybridRule = DEFAULT_RULE):
        super().__init__()
        self.cues = TransitionDetector(threshold=threshold, min_scene_len=min_scene_len)
        net = load_transnet(device)
        self.every_frame = net.device.startswith("cuda") if every_frame is None else every_frame
        self.tiles = WindowedTransNet(net, batch=8 if self.every_frame and net.device.startswith("cuda") else 1)
        self.rule = rule
        self._frames = _Frames()
        self._candidates: list[_Candidate] = []
        self._scanner = _RunScanner(rule.add)
        self._next = 0  # next frame whose probability the run scanner has not read
        self._spiked = -1  # last frame whose spike was decided
        self._chosen: dict[int, _Candidate] = {}  # boundaries decided, not handed out yet
        self._recent: deque[_Candidate] = deque(maxlen=8)  # the latest handed out (runs near them are theirs)
        self._last = -1  # last boundary handed out
        self.gradual_spans: deque[tuple[int, int]] = deque(maxlen=64)

    @property
    def _lag(self) -> int:
        """Frames between the newest frame and the last one decided: the cues' delay plus the
        lookahead of the network's window around their latest candidate."""
        return self.cues.event_buffer_length + WINDOW + STEP

    def process_frame(self, timecode: FrameTimecode, frame_img: np.ndarray) -> list[FrameTimecode]:
        f = timecode.frame_num
        self.tiles.add(f, transnet_frame(frame_img))
        cut_frames = self.cues.process_frame(timecode, frame_img)
        self._observe(f)
        for c in cut_frames:
            self._add_candidate(c.frame_num)
        if self.every_frame:
            self.tiles.compute([w for w in range(self.tiles.window_of(f) - 2, self.tiles.window_of(f) + 1)
                                if w >= 0 and self.tiles.ready(w)])
        return [FrameTimecode(b, fps=timecode) for b in self._decide(f - self._lag)]

    def post_process(self, timecode: FrameTimecode) -> list[FrameTimecode]:
        for c in self.cues.post_process(timecode):
            self._add_candidate(c.frame_num)
        self.tiles.finish()
        if self.every_frame:
            self.tiles.compute(range(self.tiles.windows_total()))
        return [FrameTimecode(b, fps=timecode) for b in self._decide(None)]

    def _observe(self, f: int) -> None:
        """Remember the cues' view of the newest frame and whether its difference spikes."""
        diff, black = self.cues.newest_stats
        self._frames.diff[f], self._frames.black[f] = diff, black
        near = sum(self._frames.diff.get(f - i, 0.0) for i in range(1, 5)) / 4
        if diff >= self.rule.suspect * self.cues.threshold and diff >= 2 * near:
            self._frames.spikes[f] = diff >= self.cues.ratio * near

    def _add_candidate(self, frame: int) -> None:
        span = next((s for s in reversed(self.cues.gradual_spans) if s[0] < frame < s[1]), None)
        black = self._frames.black.get(frame) != self._frames.black.get(frame - 1)
        kind = "gradual" if span is not None else ("black" if black else "cut")
        self._candidates.append(_Candidate(frame, kind, self._frames.diff.get(frame, 0.0), span))

    def _spikes(self, upto: int | None, near: list[int]) -> list[_Candidate]:
        """Spikes up to ``upto`` that no cue candidate (frames ``near``) reports."""
        return [_Candidate(f, "spike", self._frames.diff[f], None, sharp)
                for f, sharp in sorted(self._frames.spikes.items())
                if f > self._spiked and (upto is None or f <= upto) and all(abs(f - n) > REACH for n in near)]

    def _decide(self, upto: int | None) -> list[int]:
        """Decide about the candidates up to frame ``upto`` (all when ``None``); hand out the
        boundaries up to where the network's runs are known (:attr:`_back` frames earlier)."""
        near = [c.frame for c in self._candidates] + [*self._chosen, *(c.frame for c in self._recent)]
        due = [c for c in self._candidates if upto is None or c.frame <= upto]
        self._candidates = [c for c in self._candidates if upto is not None and c.frame > upto]
        asked = [c for c in due + self._spikes(upto, near) if not self._sure(c)]
        for c in asked:
            self._probe(*self._reach(c))
        self._chosen.update({c.frame: c for c in due if self._sure(c)})
        self._chosen.update({c.frame: c for c in asked if self._keep(c)})
        self._spiked = upto if upto is not None else self._spiked
        emit = None if upto is None else upto - self._back
        for run in self._runs(emit):
            if not any(self._same(run, c) for c in [*self._chosen.values(), *self._recent]):
                self._chosen[run.boundary] = _Candidate(run.boundary, "gradual" if run.gradual else "cut", 0.0,
                                                        (run.first, run.last) if run.gradual else None)
        out = []
        for frame in sorted(f for f in self._chosen if emit is None or f <= emit):
            c = self._chosen.pop(frame)
            self._recent.append(c)
            if frame > self._last + 1:
                if c.span is not None:
                    self.gradual_spans.append(c.span)
                out.append(frame)
                self._last = frame
        if emit is not None:
            self._forget(emit)
        return out

    @property
    def _back(self) -> int:
        """How far before a candidate the frames deciding about it reach (a dissolve's start):
        the network's runs are scanned this much behind the decisions."""
        return self.cues.event_buffer_length + REACH

    def _sure(self, c: _Candidate) -> bool:
        """Black edges and strong cuts stand without the network."""
        return c.kind == "black" or (c.kind == "cut" and c.diff >= self.rule.sure * self.cues.threshold)

    @staticmethod
    def _reach(c: _Candidate) -> tuple[int, int]:
        """The frames whose probability decides about ``c``."""
        lo, hi = c.span if c.span else (c.frame, c.frame)
        return lo - REACH, hi + (REACH if c.span else REACH - 1)

    def _probe(self, first: int, last: int) -> None:
        if not self.every_frame:
            self.tiles.probe(max(0, first), last if self.tiles.end is None else min(last, self.tiles.end - 1))

    def _keep(self, c: _Candidate) -> bool:
        peak = self._peak(*self._reach(c))
        if c.kind == "gradual":
            return peak >= self.rule.confirm_gradual
        if c.kind == "spike":
            return c.sharp and c.diff >= self.rule.sure * self.cues.threshold and peak >= self.rule.agree \
                and self._persists(c.frame)
        return peak >= self.rule.confirm

    def _persists(self, f: int) -> bool:
        """The change at ``f`` is still there ``persist`` frames on (a flash returns to the shot), as the
        cues test their cuts; on the network's small frames, which the hybrid keeps anyway."""
        frames, later = self.tiles.frames, f + self.cues.persist
        if f - 1 not in frames or f not in frames:
            return True
        later_frame = frames.get(later, frames[max(i for i in frames if i <= later)])
        before = frames[f - 1].astype(np.int16)
        return np.abs(later_frame - before).mean() >= 0.5 * np.abs(frames[f] - before).mean()

    def _peak(self, first: int, last: int) -> float:
        return max((self.tiles.prob(i) or 0.0) for i in range(max(0, first), last + 1))

    @staticmethod
    def _same(run: _Run, c: _Candidate) -> bool:
        """Whether a network run is a transition a kept candidate already reports."""
        lo, hi = c.span if c.span else (c.frame, c.frame)
        return run.first - REACH <= hi and lo <= run.last + REACH + 1

    def _runs(self, upto: int | None) -> list[_Run]:
        """Finished runs of the network's probability above ``rule.add`` up to ``upto``
        (frames the network did not see count as 0)."""
        runs = []
        end = (self.tiles.end or 0) if upto is None else upto + 1
        for f in range(self._next, end):
            run = self._scanner.feed(f, self.tiles.prob(f) or 0.0)
            if run is not None:
                runs.append(run)
        if upto is None and (run := self._scanner.feed(end, 0.0)) is not None:
            runs.append(run)
        self._next = max(self._next, end)
        return runs

    def _forget(self, upto: int) -> None:
        keep_from = upto - WINDOW - self._back
        self.tiles.forget_before(keep_from)
        self._frames.forget_before(keep_from)

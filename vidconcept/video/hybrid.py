"""Shot detectors built on TransNetV2: the network alone, and the network where cheap cues flag.

:class:`TransNetDetector` (``--detector transnetv2``) runs the network on every frame and
turns each run of frames above ``threshold`` into one boundary, as the published
inference does (``predictions_to_scenes``); runs of 3 frames or more are gradual
transitions, whose frames get no keyframe.

:class:`HybridDetector` (``--detector hybrid``) runs our cheap detector
(:class:`~vidconcept.video.transitions.TransitionDetector`) and asks the network only about
the windows around what it flags: its candidate boundaries and weaker spikes of the frame
difference. A candidate stays when the network agrees (:class:`HybridRule`), or when the
cues' evidence alone is strong (black edges; a very large cut on black-and-white film, where
the network is weak); a transition the network finds in a window the cues opened is added.
On a GPU (``every_frame``) the network sees every window, and the same rule decides.

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

from vidconcept.video.transitions import TransitionDetector
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

    Fitted on the dev clips only (``benchmarks/fit_hybrid.py``; the held-out clips are
    never looked at).

    Attributes:
        confirm: Least network probability near a cue's cut (``REACH`` frames) that keeps it.
        confirm_gradual: Least network probability inside a cue's gradual span that keeps it.
        strong: A cue's cut whose frame difference is this many times the cue threshold
            stays whatever the network says.
        add: Network probability above which a run the cues did not report is added.
        suspect: Spikes of the frame difference this share of the cue threshold (and twice
            their neighbours') open a window too.
    """

    confirm: float = 0.05
    confirm_gradual: float = 0.02
    strong: float = 4.0
    add: float = 0.5
    suspect: float = 0.5


#: The rule of :class:`HybridDetector` (see :class:`HybridRule`).
DEFAULT_RULE = HybridRule()


@dataclass
class _Candidate:
    frame: int
    kind: str  # "cut", "gradual" or "black"
    diff: float
    span: tuple[int, int] | None = None


@dataclass
class _Frames:
    """What the hybrid remembers per recent frame from the cues."""

    diff: dict[int, float] = field(default_factory=dict)
    black: dict[int, bool] = field(default_factory=dict)

    def forget_before(self, frame: int) -> None:
        for store in (self.diff, self.black):
            for i in [i for i in store if i < frame]:
                del store[i]


class HybridDetector(SceneDetector):
    """Cheap cues everywhere, TransNetV2 where they flag (see the module docstring).

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
        self._wanted: set[int] = set()
        self._scanner = _RunScanner(rule.add)
        self._next = 0  # next frame the decision has not reached
        self._last = -1  # last boundary handed out
        self.gradual_spans: deque[tuple[int, int]] = deque(maxlen=64)

    @property
    def _lag(self) -> int:
        """Frames between the newest frame and the last one decided: the cues' delay plus
        the lookahead of a window around their latest candidate."""
        return self.cues.event_buffer_length + WINDOW + STEP

    def process_frame(self, timecode: FrameTimecode, frame_img: np.ndarray) -> list[FrameTimecode]:
        f = timecode.frame_num
        self.tiles.add(f, transnet_frame(frame_img))
        cut_frames = self.cues.process_frame(timecode, frame_img)
        self._observe(f)
        for c in cut_frames:
            self._add_candidate(c.frame_num)
        if self.every_frame:
            self._wanted.add(self.tiles.window_of(f))
        self.tiles.compute([w for w in self._wanted if self.tiles.ready(w)])
        return [FrameTimecode(b, fps=timecode) for b in self._decide(f - self._lag)]

    def post_process(self, timecode: FrameTimecode) -> list[FrameTimecode]:
        for c in self.cues.post_process(timecode):
            self._add_candidate(c.frame_num)
        self.tiles.finish()
        self.tiles.compute(self._wanted)
        return [FrameTimecode(b, fps=timecode) for b in self._decide(None)]

    def _observe(self, f: int) -> None:
        """Remember the cues' view of the newest frame; a spike of its difference opens a window."""
        diff, black = self.cues.newest_stats
        self._frames.diff[f], self._frames.black[f] = diff, black
        recent = [self._frames.diff.get(f - i, 0.0) for i in range(1, 5)]
        if diff >= self.rule.suspect * self.cues.threshold and diff >= 2 * (sum(recent) / 4):
            self._want_around(f, f)

    def _want_around(self, first: int, last: int) -> None:
        for w in range(self.tiles.window_of(first - REACH), self.tiles.window_of(last + REACH) + 1):
            self._wanted.add(w)

    def _add_candidate(self, frame: int) -> None:
        span = next((s for s in reversed(self.cues.gradual_spans) if s[0] < frame < s[1]), None)
        black = self._frames.black.get(frame) != self._frames.black.get(frame - 1)
        kind = "gradual" if span is not None else ("black" if black else "cut")
        self._candidates.append(_Candidate(frame, kind, self._frames.diff.get(frame, 0.0), span))
        self._want_around(*(span or (frame, frame)))

    def _decide(self, upto: int | None) -> list[int]:
        """Boundaries up to frame ``upto`` (all when ``None``), in order."""
        kept = [c for c in self._candidates if upto is None or c.frame <= upto]
        self._candidates = [c for c in self._candidates if upto is not None and c.frame > upto]
        chosen = {c.frame: c for c in kept if self._keep(c)}
        for run in self._runs(upto):
            if not any(self._same(run, c) for c in chosen.values()):
                chosen[run.boundary] = _Candidate(run.boundary, "gradual" if run.gradual else "cut", 0.0,
                                                  (run.first, run.last) if run.gradual else None)
        out = []
        for frame in sorted(chosen):
            if frame > self._last + 1:
                if chosen[frame].span is not None:
                    self.gradual_spans.append(chosen[frame].span)
                out.append(frame)
                self._last = frame
        if upto is not None:
            self._forget(upto)
        return out

    def _keep(self, c: _Candidate) -> bool:
        if c.kind == "black":
            return True
        if c.kind == "gradual":
            return self._peak(c.span[0] - REACH, c.span[1] + REACH) >= self.rule.confirm_gradual
        return self._peak(c.frame - REACH, c.frame + REACH - 1) >= self.rule.confirm or \
            c.diff >= self.rule.strong * self.cues.threshold

    def _peak(self, first: int, last: int) -> float:
        return max((self.tiles.prob(i) or 0.0) for i in range(first, last + 1))

    @staticmethod
    def _same(run: _Run, c: _Candidate) -> bool:
        """Whether a network run is a transition a kept candidate already reports."""
        lo, hi = c.span if c.span else (c.frame, c.frame)
        return run.first - REACH <= hi and lo <= run.last + REACH + 1

    def _runs(self, upto: int | None) -> list[_Run]:
        """Finished runs of the network's probability above ``rule.add`` up to ``upto``
        (frames whose window was not run count as 0)."""
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
        keep_from = upto - WINDOW
        self.tiles.forget_before(keep_from)
        self._frames.forget_before(keep_from)
        self._wanted = {w for w in self._wanted if w * STEP + STEP > keep_from}

"""Synthetic multi-shot videos with exactly known transitions.

Shot detection can only be tested against a ground truth, and hand-labelled
clips are scarce; PySceneDetect's ``tests/release/synthetic.py`` shows the
alternative: render clips whose cuts are known by construction. Each shot here
is a still photograph filmed with a slow Ken Burns move (zoom and pan), so the
detector sees real texture *and* camera motion; shots are joined by hard cuts,
dissolves or fades through black, and shots may contain flashes or a moving
text overlay, which must not split them.

The ground truth uses the schema of ``../shared/videos/testvideo.json``: 0-based
frame numbers, ``hard_cuts`` (first frame of the new shot),
``gradual_transitions`` (``from``/``to`` inclusive), ``black_segments`` and
``content_shots`` (label -> inclusive ``[start, end]``).

Example::

    clip = Clip([ShotSpec(coffee, 40, "coffee"), ShotSpec(cat, 40, "chelsea")],
                [Transition("dissolve", 16)])
    truth = clip.write(Path("demo.mp4"))
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

#: Camera moves: (zoom at start, zoom at end, pan x from -> to, pan y from -> to);
#: zoom is the fraction of the photo's covering crop, pan in [-1, 1] of the free room.
MOVES = {
    "zoom_in": (1.0, 0.8, (0.0, 0.2), (0.0, 0.1)),
    "zoom_out": (0.78, 1.0, (-0.2, 0.0), (0.1, 0.0)),
    "pan_right": (0.82, 0.82, (-1.0, 1.0), (0.0, 0.0)),
    "pan_left": (0.82, 0.82, (1.0, -1.0), (0.2, -0.2)),
    "static": (0.9, 0.9, (0.0, 0.0), (0.0, 0.0)),
}
#: A whip pan: still, then the camera swings across the photo in a few frames, then still.
WHIP = (0.7, (-1.0, 1.0), (0.0, 0.0))


@dataclass
class ShotSpec:
    """One shot: a photo, its length in frames, a camera move and what it shows.

    ``flashes`` are (start frame within the shot, length) of near-white frames;
    ``text`` draws a caption moving across the shot; ``brightness`` scales the
    pixels (dark archive shots); ``move="whip"`` swings the camera across the
    photo in the shot's middle 4 frames.
    """

    image: np.ndarray
    frames: int
    label: str
    move: str = "zoom_in"
    concepts: list[str] = field(default_factory=list)
    flashes: list[tuple[int, int]] = field(default_factory=list)
    text: str | None = None
    brightness: float = 1.0


@dataclass
class Transition:
    """How one shot leads into the next: ``cut``, ``dissolve``, ``fade`` (through
    black), ``wipe`` (a vertical edge sweeps left to right) or ``mosaic`` (the
    new shot replaces the old one block by block in a random order).

    ``frames`` is the dissolve or wipe length, or the length of each of the
    fade-out and the fade-in; ``black`` the number of fully black frames between them.
    """

    kind: str
    frames: int = 0
    black: int = 0


def film(spec: ShotSpec, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The frames of one shot: the photo under a smooth affine camera move."""
    width, height = size
    image = spec.image if spec.image.ndim == 3 else np.repeat(spec.image[:, :, None], 3, axis=2)
    ih, iw = image.shape[:2]
    cover = min(iw / width, ih / height)  # source pixels per output pixel at zoom 1
    z0, z1, (x0, x1), (y0, y1) = (WHIP[0], WHIP[0], *WHIP[1:]) if spec.move == "whip" else MOVES[spec.move]
    for i in range(spec.frames):
        t = _progress(i, spec)
        zoom = cover * (z0 + (z1 - z0) * t)
        cx = iw / 2 + (x0 + (x1 - x0) * t) * (iw - width * zoom) / 2
        cy = ih / 2 + (y0 + (y1 - y0) * t) * (ih - height * zoom) / 2
        matrix = np.float32([[zoom, 0, cx - zoom * width / 2], [0, zoom, cy - zoom * height / 2]])
        frame = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT)
        yield _effects(frame, spec, i)


def _progress(i: int, spec: ShotSpec) -> float:
    """Camera path position 0..1 at frame ``i``: eased over the shot, or a 4-frame whip."""
    if spec.move == "whip":
        mid = spec.frames // 2
        return float(np.clip((i - mid + 2) / 4, 0.0, 1.0))
    t = i / max(1, spec.frames - 1)
    return t * t * (3 - 2 * t)  # ease in/out


def _effects(frame: np.ndarray, spec: ShotSpec, i: int) -> np.ndarray:
    if spec.brightness != 1.0:
        frame = cv2.convertScaleAbs(frame, alpha=spec.brightness)
    if any(start <= i < start + length for start, length in spec.flashes):
        frame = cv2.addWeighted(frame, 0.25, np.full_like(frame, 255), 0.75, 0)
    if spec.text:
        x = int(20 + (frame.shape[1] - 300) * i / max(1, spec.frames - 1))
        cv2.putText(frame, spec.text, (x, frame.shape[0] - 30), cv2.FONT_HERSHEY_SIMPLEX, 1.2,
                    (255, 255, 255), 3, cv2.LINE_AA)
    return frame


@dataclass
class Clip:
    """Shots joined by transitions (``len(transitions) == len(shots) - 1``).

    Optional ``lead_black``/``tail_black`` frames of black before and after;
    ``overlay`` burns a static broadcast overlay (see :func:`broadcast_overlay`)
    into every frame; ``letterbox`` adds black bars of that many pixels at top and bottom.
    """

    shots: list[ShotSpec]
    transitions: list[Transition]
    size: tuple[int, int] = (640, 360)
    fps: int = 25
    lead_black: int = 0
    tail_black: int = 0
    overlay: bool = False
    letterbox: int = 0

    def __post_init__(self) -> None:
        if len(self.transitions) != len(self.shots) - 1:
            raise ValueError("need exactly one transition between consecutive shots")

    def frames(self) -> Iterator[np.ndarray]:
        """Render every frame (RGB uint8)."""
        black = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        yield from (black for _ in range(self.lead_black))
        clips = [list(film(s, self.size)) for s in self.shots]
        current = clips[0]
        for transition, nxt in zip(self.transitions, clips[1:], strict=True):
            current, frames = _join(current, nxt, transition, black)
            yield from map(self._dress, frames)
        yield from map(self._dress, current)
        yield from (black for _ in range(self.tail_black))

    def _dress(self, frame: np.ndarray) -> np.ndarray:
        """Letterbox bars and the static overlay, which stay the same across shots."""
        if self.letterbox:
            frame = frame.copy()
            frame[: self.letterbox] = 0
            frame[-self.letterbox :] = 0
        return broadcast_overlay(frame) if self.overlay else frame

    def truth(self) -> dict:
        """Ground truth in the schema of ``testvideo.json`` (see module doc)."""
        return _Truth(self).build()

    def write(self, path: Path, crf: int = 26, rotation: int = 0) -> dict:
        """Encode to H.264 (deterministic: one x264 thread) and write ``<path>.json``."""
        write_video(self.frames(), path, self.fps, crf=crf, rotation=rotation)
        truth = {"video": Path(path).name, **self.truth()}
        Path(path).with_suffix(".json").write_text(json.dumps(truth, indent=1) + "\n")
        return truth


def _join(current: list[np.ndarray], nxt: list[np.ndarray], tr: Transition, black: np.ndarray
          ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames emitted up to and including the transition, and the rest of ``nxt``."""
    if tr.kind == "cut":
        return nxt, current
    if tr.kind == "dissolve":
        n = tr.frames
        mixed = [cv2.addWeighted(a, 1 - (i + 1) / (n + 1), b, (i + 1) / (n + 1), 0)
                 for i, (a, b) in enumerate(zip(current[-n:], nxt[:n], strict=True))]
        return nxt[n:], current[:-n] + mixed
    if tr.kind in ("wipe", "mosaic"):
        n = tr.frames
        masks = _wipe_masks(current[0].shape[:2], n, tr.kind)
        mixed = [np.where(m[:, :, None], b, a) for m, a, b in zip(masks, current[-n:], nxt[:n], strict=True)]
        return nxt[n:], current[:-n] + mixed
    if tr.kind == "fade":
        n = tr.frames
        out = [cv2.addWeighted(f, 1 - (i + 1) / (n + 1), black, 0, 0) for i, f in enumerate(current[-n:])]
        into = [cv2.addWeighted(f, (i + 1) / (n + 1), black, 0, 0) for i, f in enumerate(nxt[:n])]
        return nxt[n:], current[:-n] + out + [black] * tr.black + into
    raise ValueError(f"unknown transition kind {tr.kind!r}")


def _wipe_masks(shape: tuple[int, int], n: int, kind: str) -> list[np.ndarray]:
    """Boolean masks (True: new shot) for the ``n`` frames of a wipe, growing to full."""
    h, w = shape
    if kind == "wipe":
        cols = np.arange(w)[None, :]
        return [np.broadcast_to(cols < w * (i + 1) / (n + 1), (h, w)) for i in range(n)]
    block = 16
    rows, cols = -(-h // block), -(-w // block)
    order = np.random.default_rng(7).permutation(rows * cols).reshape(rows, cols)
    grid = [(order < rows * cols * (i + 1) / (n + 1)) for i in range(n)]
    return [np.kron(g, np.ones((block, block), bool))[:h, :w] for g in grid]


def broadcast_overlay(frame: np.ndarray) -> np.ndarray:
    """A news channel's static graphics: a caption bar and a ticker over the bottom
    third, a logo in the top-right corner and a clock in the top-left one."""
    out = frame.copy()
    h, w = out.shape[:2]
    out[2 * h // 3 : 2 * h // 3 + h // 6] = (20, 40, 140)  # caption bar
    out[2 * h // 3 + h // 6 :] = (230, 230, 230)  # ticker
    cv2.putText(out, "WORLD NEWS TONIGHT", (8, 2 * h // 3 + h // 8), cv2.FONT_HERSHEY_SIMPLEX,
                h / 400, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(out, "MARKETS +0.4% | WEATHER 12C", (8, h - h // 30), cv2.FONT_HERSHEY_SIMPLEX,
                h / 450, (10, 10, 10), 1, cv2.LINE_AA)
    cv2.rectangle(out, (w - w // 6, 4), (w - 6, h // 7), (200, 30, 30), -1)  # logo
    cv2.putText(out, "24", (w - w // 7, h // 9), cv2.FONT_HERSHEY_SIMPLEX, h / 300, (255, 255, 255), 2)
    cv2.rectangle(out, (4, 4), (w // 6, h // 10), (0, 0, 0), -1)  # clock
    return out


@dataclass
class _Truth:
    clip: Clip
    pos: int = 0
    cuts: list[int] = field(default_factory=list)
    gradual: list[dict] = field(default_factory=list)
    blacks: list[list[int]] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)

    def build(self) -> dict:
        c = self.clip
        self._black(c.lead_black, cut=True)
        self.starts.append(self.pos)
        for shot, tr in zip(c.shots, c.transitions, strict=False):
            self.pos += shot.frames
            self._transition(tr)
        self.pos += c.shots[-1].frames
        self.ends.append(self.pos - 1)
        self._black(c.tail_black, cut=True)
        self.cuts.sort()
        shots = {s.label: [a, b] for s, a, b in zip(c.shots, self.starts, self.ends, strict=True)}
        return {"fps": c.fps, "frames": self.pos, "frame_index": "0-based, first frame of the new shot",
                "hard_cuts": self.cuts, "gradual_transitions": self.gradual, "black_segments": self.blacks,
                "content_shots": shots, "concepts": {s.label: s.concepts for s in c.shots}}

    def _black(self, n: int, cut: bool = False) -> None:
        """``n`` black frames; ``cut``: a hard cut from or to black (leading/trailing)."""
        if n and cut:
            self.cuts.append(self.pos + (n if self.pos == 0 else 0))
        if n:
            self.blacks.append([self.pos, self.pos + n - 1])
            self.pos += n

    def _transition(self, tr: Transition) -> None:
        p = self.pos
        if tr.kind == "cut":
            self.cuts.append(p)
            self.ends.append(p - 1)
            self.starts.append(p)
        elif tr.kind in ("dissolve", "wipe", "mosaic"):
            a = p - tr.frames  # frames a .. p-1 are mixed
            self.gradual.append({"type": tr.kind, "from": a, "to": p - 1})
            self.ends.append(a + tr.frames // 2 - 1)
            self.starts.append(a + tr.frames // 2)
            self.pos = a  # the next shot's first frames are the mixed ones
        else:  # fade: out over the last frames, black, in over the next shot's first frames
            a = p - tr.frames
            self.gradual.append({"type": "fade_out", "from": a, "to": p - 1})
            self.ends.append(p - 1)
            self.pos = p
            self._black(tr.black)
            self.gradual.append({"type": "fade_in", "from": self.pos, "to": self.pos + tr.frames - 1})
            self.starts.append(self.pos)


def write_video(frames: Iterator[np.ndarray], path: Path, fps: int, *, crf: int = 26, rotation: int = 0,
                codec: str = "libx264") -> None:
    """Encode RGB frames as H.264 yuv420p MP4, optionally with a display rotation."""
    with av.open(str(path), "w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = _video_stream(container, codec, fps, frame.shape, crf, rotation)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            container.mux(stream.encode())


def _video_stream(container, codec: str, fps: int, shape: tuple[int, ...], crf: int, rotation: int):
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = shape[:2]
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
        # mbtree=0: x264's macroblock-tree rate control gave a different stream at every encode of the
        # same frames here (even with one thread), and a fixture's boundaries then moved between runs
        stream.options = {"crf": str(crf), "preset": "medium", "threads": "1", "g": str(2 * fps),
                          "x264-params": "mbtree=0"}
    if rotation:
        stream.set_display_rotation(rotation)
    return stream

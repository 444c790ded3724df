"""Timecodes, in one place: SMPTE (``HH:MM:SS:FF``, drop-frame ``HH:MM:SS;FF``) for exports, and
the short ``MM:SS.ss`` clock the CLI prints (the web page's JavaScript formats the same clock).

Timecodes are derived from a shot's time in seconds, not its decoded frame
index: ``frame = round(seconds × rate)`` at the video's *nominal* rate. For
constant-frame-rate files this is the frame index; for variable-frame-rate files
(phones, screen recordings) it is where an editing suite, which conforms such
files to a nominal rate, puts the same instant. A rate within 0.5 % of a standard
broadcast rate snaps to the nearest one (PyAV's average rate of a 29.97 file is rarely exactly
30000/1001); any other rate (the average of a variable-rate file, say 27.6) has the
nominal rate ``round(rate)`` (28), so timecode seconds stay wall-clock seconds.

29.97 and 59.94 fps use drop-frame timecode (SMPTE ST 12-1): frame *labels* 0 and 1
(0–3 at 59.94) are skipped at the start of every minute except every tenth, so
the timecode keeps pace with the wall clock. No frames are dropped, only labels.

Example::

    rate = FrameRate.from_fps(29.97)
    frames_to_timecode(1800, rate)   # '00:01:00;02'
    seconds_to_timecode(600.0, rate) # '00:10:00;00'
    clock(75.5)                      # '01:15.50'
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

#: Broadcast and cinema rates a measured rate snaps to: (exact rate, drop-frame).
STANDARD_RATES: tuple[tuple[Fraction, bool], ...] = (
    (Fraction(24000, 1001), False),
    (Fraction(24), False),
    (Fraction(25), False),
    (Fraction(30000, 1001), True),
    (Fraction(30), False),
    (Fraction(48), False),
    (Fraction(50), False),
    (Fraction(60000, 1001), True),
    (Fraction(60), False),
)
#: Relative distance within which a measured rate counts as a standard one.
SNAP_TOLERANCE = 0.005
#: Timecodes wrap after 24 hours, like a tape deck's.
HOURS_PER_DAY = 24

Timecode = str


@dataclass(frozen=True)
class FrameRate:
    """A nominal frame rate and how its timecodes count.

    Attributes:
        fps: frames per second of real time (30000/1001 for "29.97").
        timebase: frames per timecode second (30 for 29.97).
        drop_frame: whether timecode labels are dropped (29.97, 59.94).
    """

    fps: Fraction
    timebase: int
    drop_frame: bool = False

    @classmethod
    def from_fps(cls, fps: float | Fraction | None) -> "FrameRate":
        """The nominal rate of a measured (possibly average, variable) rate; 25 when unknown."""
        if not fps or fps <= 0:
            fps = 25
        rate, drop = min(STANDARD_RATES, key=lambda r: abs(float(fps) - float(r[0])))
        if abs(float(fps) - float(rate)) <= SNAP_TOLERANCE * float(rate):
            return cls(rate, round(rate), drop)
        whole = max(1, round(float(fps)))
        return cls(Fraction(whole), whole, False)

    @property
    def dropped_per_minute(self) -> int:
        """Labels skipped each minute: 2 per 30 timecode frames per second (4 at 59.94)."""
        return self.timebase // 15 if self.drop_frame else 0

    def label(self) -> str:
        """Human-readable rate, e.g. ``29.97 DF``."""
        text = f"{float(self.fps):.3f}".rstrip("0").rstrip(".")
        return f"{text} DF" if self.drop_frame else text


def seconds_to_frame(seconds: float, rate: FrameRate) -> int:
    """The frame of ``rate`` nearest to ``seconds`` (the VFR rule in the module docstring)."""
    return max(0, round(Fraction(seconds) * rate.fps))


def frames_to_timecode(frame: int, rate: FrameRate) -> Timecode:
    """Timecode of frame ``frame`` (0-based) at ``rate``; ``;`` separates frames when drop-frame."""
    if frame < 0:
        raise ValueError(f"frame must be >= 0, not {frame}")
    label = _drop_frame_label(frame, rate) if rate.drop_frame else frame
    tb = rate.timebase
    label %= tb * 3600 * HOURS_PER_DAY
    hours, rest = divmod(label, tb * 3600)
    minutes, rest = divmod(rest, tb * 60)
    seconds, frames = divmod(rest, tb)
    sep = ";" if rate.drop_frame else ":"
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{sep}{frames:02d}"


def seconds_to_timecode(seconds: float, rate: FrameRate) -> Timecode:
    """Timecode of the instant ``seconds`` at ``rate``."""
    return frames_to_timecode(seconds_to_frame(seconds, rate), rate)


def clock(seconds: float) -> str:
    """``MM:SS.ss`` (minutes past 59 keep counting): a shot's place in a listing, no frame rate needed."""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:05.2f}"


def timecode_to_frames(timecode: Timecode, rate: FrameRate) -> int:
    """Inverse of :func:`frames_to_timecode` (for readers of exported files)."""
    hours, minutes, seconds, frames = (int(p) for p in timecode.replace(";", ":").split(":"))
    tb = rate.timebase
    label = ((hours * 60 + minutes) * 60 + seconds) * tb + frames
    if not rate.drop_frame:
        return label
    total_minutes = hours * 60 + minutes
    return label - rate.dropped_per_minute * (total_minutes - total_minutes // 10)


def _drop_frame_label(frame: int, rate: FrameRate) -> int:
    """Frame count → drop-frame label count (the standard formula, e.g. SMPTE ST 12-1 annex).

    Every ten minutes holds ``10 × 60 × timebase − 9 × drop`` real frames; within
    them the first minute keeps all labels and each later one skips ``drop``.
    """
    drop = rate.dropped_per_minute
    per_minute = rate.timebase * 60 - drop
    per_ten = per_minute * 10 + drop
    tens, rest = divmod(frame, per_ten)
    skipped = drop * 9 * tens
    if rest > drop:
        skipped += drop * ((rest - drop) // per_minute)
    return frame + skipped

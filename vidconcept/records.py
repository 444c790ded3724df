"""Records every layer passes around: one per thing, defined once (the base layer).

A :class:`Shot` is born in shot detection (``video.shots``: frames, times, where its keyframe
was taken), gets its keyframe file's path when an engine writes the JPEG, and is what the
store writes (``index.store``). A stored shot comes back out as a :class:`ShotHit` (the same
shot with its ids, video and scores): search and similar return it, exports write their rows
from it, and the web's response schema is built from it; see ``docs/ARCHITECTURE.md``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .timecode import FrameRate, Timecode, seconds_to_timecode


@dataclass(frozen=True)
class Shot:
    """A content shot: frames ``[start_frame, end_frame)``, times in seconds from PTS.

    ``keyframe_frame``/``keyframe_s``: the frame the keyframe was taken from, and its time (for
    upgrades to seek to); ``keyframe``: the keyframe JPEG's path relative to the index folder,
    once written.
    """

    index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    keyframe: str | None = None
    keyframe_frame: int | None = None
    keyframe_s: float | None = None

    def to_dict(self, index: bool = True) -> dict:
        """JSON-ready dict; ``index=False`` leaves the shot number out."""
        out = {"start_frame": self.start_frame, "end_frame": self.end_frame,
               "start_s": round(self.start_s, 6), "end_s": round(self.end_s, 6)}
        return {"index": self.index, **out} if index else out


@dataclass
class ShotHit:
    """A stored shot as search, exports and the web show it.

    ``score``: the query's score (search, similar), ``None`` when shots are listed rather
    than ranked (an export of a video); ``concepts``: the shot's top concepts, best first;
    ``scores``: the scores of concepts asked for by name (an export's ``--concepts``, the
    web's shot detail). ``end_*`` is exclusive (the first frame after the shot).
    """

    shot_id: int
    video_id: int
    video: str  # absolute path of the video file
    shot_index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    keyframe: str | None  # absolute path of the keyframe JPEG
    fps: float | None = None  # the video's measured rate
    score: float | None = None
    concepts: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping, root: Path, **extra) -> "ShotHit":
        """From a row of ``Store.shots`` (keyframe relative to the index folder ``root``)."""
        keyframe = str(root / row["keyframe"]) if row["keyframe"] else None
        fields = ("shot_id", "video_id", "video", "shot_index", "start_frame", "end_frame", "start_s", "end_s")
        return cls(**{k: row[k] for k in fields}, keyframe=keyframe, fps=row.get("fps"), **extra)

    @property
    def rate(self) -> FrameRate:
        """The nominal rate timecodes count in (see :mod:`vidconcept.timecode`)."""
        return FrameRate.from_fps(self.fps)

    @property
    def start_tc(self) -> Timecode:
        return seconds_to_timecode(self.start_s, self.rate)

    @property
    def end_tc(self) -> Timecode:
        return seconds_to_timecode(self.end_s, self.rate)

    def to_dict(self) -> dict:
        return asdict(self)

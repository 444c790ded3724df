"""Records every layer passes around: one per thing, defined once (the base layer).

A :class:`Shot` is born in shot detection (``video.shots``: frames, times, where its keyframe
was taken), gets its keyframe file's path when an engine writes the JPEG, and is what the
store writes (``index.store``). Search results, export rows and web responses are views of a
stored shot with more fields (scores, video, URLs); see ``docs/ARCHITECTURE.md``.
"""
from __future__ import annotations

from dataclasses import dataclass


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

"""Response shapes of the REST API: they document ``/docs`` and keep the JSON stable for the page.

A shot's response is built from the record search returns (:class:`~vidconcept.records.ShotHit`),
with the URLs the page needs added: :meth:`Result.from_record`.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from pydantic import BaseModel, Field

from ..records import ShotHit


def keyframe_url(shot: int) -> str:
    return f"/keyframes/{shot}.jpg"


def video_url(video: int) -> str:
    return f"/videos/{video}"


class Result(BaseModel):
    """One ranked shot, with the URLs the page needs to show and play it."""

    shot_id: int
    video_id: int
    video: str  # absolute path of the video file
    video_name: str
    shot_index: int
    start_s: float
    end_s: float
    score: float
    keyframe_url: str | None
    video_url: str
    concepts: dict[str, float]  # the shot's top concepts, best first

    @classmethod
    def from_record(cls, hit: ShotHit, **fields):
        """The response for one shot record; ``fields`` override the record's (e.g. ``score``)."""
        urls = {"video_name": Path(hit.video).name, "video_url": video_url(hit.video_id),
                "keyframe_url": keyframe_url(hit.shot_id) if hit.keyframe else None}
        return cls.model_validate(asdict(hit) | urls | fields)


class ResultPage(BaseModel):
    """One page of results and how many shots match in all (for paging)."""

    results: list[Result]
    total: int


class Concept(BaseModel):
    name: str
    source: str | None = None
    shots: int  # shots scoring at least the requested min_score (0.5 by default)


class Video(BaseModel):
    """An indexed (or failed, or missing) video file; the numbers are ``None`` until it is decoded."""

    id: int
    name: str  # the file name
    path: str  # absolute path of the file
    status: str | None = Field(None, description="indexed, failed or missing")
    duration_s: float | None = Field(None, description="seconds, from the container's timestamps")
    fps: float | None = Field(None, description="average frame rate")
    width: int | None = Field(None, description="pixels")
    height: int | None = Field(None, description="pixels")
    video_url: str


class Shot(Result):
    """A shot with its best concept scores (``scores``; ``concepts`` stays the top few)."""

    start_frame: int
    end_frame: int
    scores: dict[str, float]


class Stats(BaseModel):
    index: str
    videos: int
    failed: int
    missing: int
    shots: int
    concepts: int
    video_seconds: float
    model: str | dict | None = None

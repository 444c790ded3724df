"""CMX 3600 edit decision lists: the shots as cuts, for any editing suite to import.

Each shot is one event: reel ``AX`` (an auxiliary, file-based source, as Premiere
and Resolve write it) with ``* FROM CLIP NAME:`` and ``* SOURCE FILE:`` comment
lines naming the video, video track, cut, source in/out from the shot's times,
and record in/out laid end to end from ``01:00:00:00`` (the broadcast convention
for a programme's start). Out points are exclusive, as CMX 3600 defines them.

The record timeline counts at the first shot's video's rate (``FCM: DROP FRAME``
for 29.97/59.94, whose timecodes then use ``;``). Shots from videos of another
rate keep their own source timecodes and get a record length of their duration
at the record rate; a warning says so, since CMX 3600 has one rate per list.

Example event::

    001  AX       V     C        00:00:01:00 00:00:02:00 01:00:00:00 01:00:01:00
    * FROM CLIP NAME: v0.mp4
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .rows import ShotRow
from ..timecode import FrameRate, frames_to_timecode, seconds_to_frame, timecode_to_frames

log = logging.getLogger(__name__)

RECORD_START = "01:00:00:00"
REEL = "AX"
#: CMX 3600 titles and reel comments are read up to this many characters.
TITLE_MAX = 70
#: Event numbers have three digits in CMX 3600; longer lists still import in most editors.
MAX_EVENTS = 999


def to_edl(rows: Sequence[ShotRow], title: str = "vidconcept") -> str:
    """The EDL text of ``rows`` in order (empty shots are skipped)."""
    rate = rows[0].rate if rows else FrameRate.from_fps(25)
    _warn_mixed(rows, rate)
    lines = [f"TITLE: {_clean(title)[:TITLE_MAX]}", f"FCM: {'DROP FRAME' if rate.drop_frame else 'NON-DROP FRAME'}", ""]
    record = timecode_to_frames(RECORD_START, rate)
    events = 0
    for row in rows:
        length = _record_length(row, rate)
        if length <= 0:
            log.warning("shot %s of %s is shorter than a frame; left out of the EDL", row.shot_index, row.video)
            continue
        events += 1
        lines += event_lines(events, row, rate, record, record + length)
        record += length
    if events > MAX_EVENTS:
        log.warning("%d events: CMX 3600 allows %d; some editors may refuse the list", events, MAX_EVENTS)
    return "\n".join(lines) + "\n"


def event_lines(number: int, row: ShotRow, rate: FrameRate, rec_in: int, rec_out: int) -> list[str]:
    """The event line and its comment lines for one shot."""
    src_in, src_out = _source_frames(row)
    times = " ".join(frames_to_timecode(f, r) for f, r in
                     ((src_in, row.rate), (src_out, row.rate), (rec_in, rate), (rec_out, rate)))
    top = ", ".join(f"{k} {v:.2f}" for k, v in row.concepts.items())
    return [
        f"{number:03d}  {REEL:<8} V     C        {times}",
        f"* FROM CLIP NAME: {_clean(Path(row.video).name)}",
        f"* SOURCE FILE: {_clean(row.video)}",
        f"* COMMENT: SHOT {row.shot_index} ID {row.shot_id}" + (f" {top}" if top else ""),
    ]


def _source_frames(row: ShotRow) -> tuple[int, int]:
    return seconds_to_frame(row.start_s, row.rate), seconds_to_frame(row.end_s, row.rate)


def _record_length(row: ShotRow, rate: FrameRate) -> int:
    if row.rate == rate:
        src_in, src_out = _source_frames(row)
        return src_out - src_in
    return seconds_to_frame(row.end_s - row.start_s, rate)


def _warn_mixed(rows: Sequence[ShotRow], rate: FrameRate) -> None:
    others = {r.rate.label() for r in rows if r.rate != rate}
    if others:
        log.warning("the EDL counts at %s fps but some shots are %s fps; their record lengths are rounded",
                    rate.label(), ", ".join(sorted(others)))


def _clean(text: str) -> str:
    """One line of printable text (an EDL is line-oriented)."""
    return " ".join(str(text).split())

"""CSV and JSON: one record per shot, for spreadsheets and cataloguing systems.

Columns: ``video, video_id, shot_id, shot_index, start_tc, end_tc, start_s,
end_s, fps, keyframe``, then ``score`` (search exports only), then
``score:<concept>`` per selected concept, then ``top_concepts``. In CSV the top
concepts are one cell ``name=score;name=score``; in JSON they are an object.
Timecodes follow :mod:`.timecode`; ``end`` is exclusive (the first frame after
the shot).
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from .rows import ShotRow

#: Version of the JSON document's layout; raise it when a field changes meaning.
JSON_VERSION = 1
BASE_FIELDS = ("video", "video_id", "shot_id", "shot_index", "start_tc", "end_tc", "start_s", "end_s",
               "fps", "keyframe")


def row_dict(row: ShotRow, concepts: Sequence[str], with_score: bool) -> dict:
    """The exported fields of one shot (top concepts as a dict)."""
    out = {
        "video": row.video, "video_id": row.video_id, "shot_id": row.shot_id, "shot_index": row.shot_index,
        "start_tc": row.start_tc, "end_tc": row.end_tc,
        "start_s": round(row.start_s, 6), "end_s": round(row.end_s, 6),
        "fps": row.rate.label(), "keyframe": str(row.keyframe) if row.keyframe else None,
    }
    if with_score:
        out["score"] = row.score
    out.update({f"score:{c}": row.scores.get(c, 0.0) for c in concepts})
    out["top_concepts"] = dict(row.concepts)
    return out


def to_csv(rows: Sequence[ShotRow], concepts: Sequence[str] = ()) -> str:
    """CSV text with a header row (RFC 4180 quoting, ``\\r\\n`` line ends as the csv module writes).

    The header is written even without shots, so a reader still sees the columns.
    """
    with_score = any(r.score is not None for r in rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames(concepts, with_score))
    writer.writeheader()
    for row in rows:
        record = row_dict(row, concepts, with_score)
        record["top_concepts"] = ";".join(f"{k}={v:g}" for k, v in row.concepts.items())
        record["keyframe"] = record["keyframe"] or ""
        writer.writerow(record)
    return buf.getvalue()


def fieldnames(concepts: Sequence[str], with_score: bool) -> list[str]:
    """Column names in export order."""
    return [*BASE_FIELDS, *(["score"] if with_score else []), *(f"score:{c}" for c in concepts), "top_concepts"]


def to_json(rows: Sequence[ShotRow], concepts: Sequence[str] = (), meta: dict | None = None) -> str:
    """A JSON object ``{"version", ...meta, "concepts", "shots": [one object per shot]}``."""
    with_score = any(r.score is not None for r in rows)
    doc = {"version": JSON_VERSION, **(meta or {}), "concepts": list(concepts),
           "shots": [row_dict(r, concepts, with_score) for r in rows]}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

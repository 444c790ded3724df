"""Exports: shot lists that travel beyond the index's own search box.

Formats (see each module for the exact layout):

* ``csv`` / ``json`` (:mod:`.tabular`): one record per shot for spreadsheets and catalogues.
* ``edl`` (:mod:`.edl`): a CMX 3600 edit decision list for editing suites.
* ``html`` (:mod:`.contact_sheet`): a self-contained contact sheet of keyframes.
* ``trecvid`` (:mod:`.trecvid`): a ranked run file that TRECVID's tools score.

Timecodes come from :func:`.timecode.frames_to_timecode` (drop-frame at 29.97/59.94,
seconds × nominal rate for variable-frame-rate videos).

Example::

    from vidconcept import Index
    from vidconcept.export import export, export_csv, render

    index = Index("vidconcept-index")
    text = export_csv(index, target="holiday.mp4", concepts=["dog"])
    export(index, query="dog AND grass", fmt="edl", out="dogs.edl")
    render(index, [12, 13, 40], "html")  # e.g. the shot ids of a result page
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError, VidconceptError
from . import rows as _rows
from .contact_sheet import to_html
from .edl import to_edl
from .rows import ShotRow, build_rows, resolve_video
from .tabular import to_csv, to_json
from ..timecode import FrameRate, frames_to_timecode, seconds_to_timecode, timecode_to_frames
from .trecvid import DEFAULT_DEPTH, DEFAULT_RUN_ID, to_trecvid

__all__ = [
    "FORMATS", "FrameRate", "ShotRow", "export", "export_csv", "export_edl", "export_html", "export_json",
    "export_text", "export_trecvid", "frames_to_timecode", "render", "resolve_video", "seconds_to_timecode",
    "select", "timecode_to_frames",
]

log = logging.getLogger(__name__)

FORMATS = ("csv", "json", "edl", "html", "trecvid")
#: Suffix a file of each format conventionally has.
SUFFIXES = {"csv": ".csv", "json": ".json", "edl": ".edl", "html": ".html", "trecvid": ".txt"}

Shots = Sequence[int | tuple[int, float]]


def select(index, target: str | int | os.PathLike | None = None, query: str | None = None,
           min_score: float = 0.0) -> list[int | tuple[int, float]]:
    """The shots an export holds, in order.

    A video (``target``: path, basename or id) gives its shots in shot order; a
    ``query`` gives the search's hits best first as ``(shot_id, score)``; both give
    the hits within that video; neither gives every shot of the index.
    """
    if query is None:
        return _rows.video_shot_ids(index, target) if target is not None else _rows.all_shot_ids(index)
    hits = _rows.query_hits(index, query, min_score)
    if target is None:
        return hits
    keep = set(_rows.video_shot_ids(index, target))
    return [h for h in hits if h[0] in keep]


def render(index, shots: Shots, fmt: str, *, concepts: Sequence[str] | None = None, min_score: float = 0.0,
           run_id: str | None = None, title: str | None = None) -> str:
    """The text of ``shots`` (ids, or ``(id, score)`` pairs from a search) in format ``fmt``.

    ``concepts`` adds those concepts' scores to csv/json (default none: the top
    concepts are always there) and picks the trecvid run's concepts (default all).
    ``min_score`` keeps shots whose search score, else any selected concept's
    score, else best concept reaches it. HTML is text too (images are inlined).
    """
    _check_format(fmt)
    _check_min_score(min_score)
    names = _rows.resolve_concept_names(index.store, concepts or ())
    if fmt == "trecvid":
        names = names or list(index.store.concept_ids())
        ids = [s[0] if isinstance(s, tuple) else s for s in shots]
        return to_trecvid(index, ids, names, run_id=run_id or DEFAULT_RUN_ID, depth=DEFAULT_DEPTH,
                          min_score=min_score)
    if run_id is not None:
        log.warning("a run id only applies to trecvid runs; ignored for %s", fmt)
    rows = [r for r in build_rows(index, shots, names) if _keep(r, min_score)]
    return _write_rows(fmt, rows, names, title or "vidconcept")


def export_text(index, fmt: str, target: str | int | os.PathLike | None = None, query: str | None = None,
                **options) -> str:
    """:func:`select` then :func:`render`; ``options`` are :func:`render`'s."""
    _check_format(fmt)
    shots = select(index, target, query, options.get("min_score", 0.0))
    options.setdefault("title", _title(index, target, query))
    return render(index, shots, fmt, **options)


def export(index, target: str | int | os.PathLike | None = None, query: str | None = None, fmt: str = "csv",
           out: str | os.PathLike | None = None, **options) -> Path | None:
    """Write an export to ``out`` (a file), or to standard output when ``out`` is None.

    This is what ``vidconcept export`` calls. Returns the file written, if any.
    """
    text = export_text(index, fmt, target, query, **options)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    return _write_file(Path(out), text)


def export_csv(index, target=None, query=None, **options) -> str:
    """CSV text of a video's or a query's shots (see :mod:`.tabular`)."""
    return export_text(index, "csv", target, query, **options)


def export_json(index, target=None, query=None, **options) -> str:
    """JSON text of a video's or a query's shots (see :mod:`.tabular`)."""
    return export_text(index, "json", target, query, **options)


def export_edl(index, target=None, query=None, **options) -> str:
    """CMX 3600 EDL text of a video's or a query's shots (see :mod:`.edl`)."""
    return export_text(index, "edl", target, query, **options)


def export_html(index, target=None, query=None, **options) -> str:
    """Self-contained HTML contact sheet (see :mod:`.contact_sheet`)."""
    return export_text(index, "html", target, query, **options)


def export_trecvid(index, target=None, query=None, **options) -> str:
    """TRECVID/trec_eval run file; no target and no query ranks the whole index (see :mod:`.trecvid`)."""
    return export_text(index, "trecvid", target, query, **options)


def _write_rows(fmt: str, rows: list[ShotRow], names: list[str], title: str) -> str:
    if fmt == "csv":
        return to_csv(rows, names)
    if fmt == "json":
        return to_json(rows, names, {"title": title})
    if fmt == "edl":
        return to_edl(rows, title)
    return to_html(rows, title)


def _keep(row: ShotRow, min_score: float) -> bool:
    if row.score is not None:
        return row.score >= min_score
    return _rows.passes(row, min_score)


def _title(index, target, query) -> str:
    if query is not None and target is None:
        return f"query: {query}"
    name = Path(resolve_video(index.store, target)["path"]).name if target is not None else Path(index.root).name
    return f"{name} — query: {query}" if query is not None else name


def _write_file(path: Path, text: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise VidconceptError(f"{path}: cannot write the export ({exc.strerror or exc}); "
                              "check the folder exists and is writable") from exc
    log.info("wrote %s", path)
    return path


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")


def _check_min_score(min_score: float) -> None:
    if not 0.0 <= min_score <= 1.0:
        raise UsageError(f"min score must be between 0 and 1, not {min_score}")

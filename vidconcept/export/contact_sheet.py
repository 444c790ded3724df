"""HTML contact sheet: one self-contained file of keyframe thumbnails.

Every keyframe is embedded as a base64 ``data:`` URI, so the file can be mailed or
archived alone; a missing keyframe gets a grey placeholder (still one ``<img>``
per shot, with ``class="thumb missing"``) and a warning. Each thumbnail is
captioned with its video, shot number, timecodes and top concepts. No script, no
external style sheet: it opens in any browser, offline.
"""
from __future__ import annotations

import base64
import html
import logging
from collections.abc import Sequence
from pathlib import Path

from .rows import ShotRow

log = logging.getLogger(__name__)

MIME_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
PLACEHOLDER = "data:image/svg+xml;base64," + base64.b64encode(
    b'<svg xmlns="http://www.w3.org/2000/svg" width="160" height="90"><rect width="100%" height="100%" '
    b'fill="#ccc"/></svg>').decode("ascii")

STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
.sheet { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 1em; }
figure { margin: 0; border: 1px solid #ddd; border-radius: 4px; overflow: hidden; }
img.thumb { width: 100%; aspect-ratio: 16 / 9; object-fit: contain; background: #111; display: block; }
figcaption { padding: .4em .6em; font-size: 12px; line-height: 1.4; }
.tc { font-family: ui-monospace, monospace; }
.concepts { color: #555; }
"""


def to_html(rows: Sequence[ShotRow], title: str = "vidconcept contact sheet") -> str:
    """A complete HTML document with one ``<figure>`` (and one ``<img class="thumb">``) per shot."""
    figures = "\n".join(figure(r) for r in rows)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{len(rows)} shots</p>\n"
        f"<div class=\"sheet\">\n{figures}\n</div>\n</body>\n</html>\n"
    )


def figure(row: ShotRow) -> str:
    """One captioned thumbnail."""
    src, missing = image_uri(row.keyframe)
    name = html.escape(Path(row.video).name)
    alt = f"{name} shot {row.shot_index}"
    concepts = ", ".join(f"{html.escape(k)} {v:.2f}" for k, v in row.concepts.items())
    score = f" · score {row.score:.3f}" if row.score is not None else ""
    return (
        f"<figure id=\"shot-{row.shot_id}\">"
        f"<img class=\"thumb{' missing' if missing else ''}\" src=\"{src}\" alt=\"{alt}\">"
        f"<figcaption><b title=\"{html.escape(row.video)}\">{name}</b> #{row.shot_index}{score}<br>"
        f"<span class=\"tc\">{row.start_tc} – {row.end_tc}</span><br>"
        f"<span class=\"concepts\">{concepts}</span></figcaption></figure>"
    )


def image_uri(keyframe: str | Path | None) -> tuple[str, bool]:
    """``(data URI, missing)`` of a keyframe file; the placeholder when it cannot be read."""
    if keyframe is None:
        return PLACEHOLDER, True
    path = Path(keyframe)
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.warning("keyframe %s cannot be read (%s); placeholder used", path, exc.strerror or exc)
        return PLACEHOLDER, True
    mime = MIME_TYPES.get(path.suffix.lower(), "image/jpeg")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", False

"""Keyframes, videos and the page itself.

Files are addressed by shot or video id, never by a path from the request, so only
files the index knows can be served. ``FileResponse`` answers HTTP Range requests
(206 Partial Content), which the browser's video element needs to seek to a shot.
"""
from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from .auth import Viewer
from .deps import Lib

STATIC_DIR = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def page() -> FileResponse:
    """The single-page UI; its state (query, filters, page) lives in the URL's query string."""
    return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})


@router.get("/signin")
def signin_page() -> FileResponse:
    """The sign-in form (the page sends a browser here when the server has accounts)."""
    return FileResponse(STATIC_DIR / "signin.html", headers={"cache-control": "no-cache"})


@router.get("/keyframes/{shot_id}.jpg", dependencies=[Viewer])
def keyframe(lib: Lib, shot_id: int) -> FileResponse:
    return FileResponse(lib.keyframe_file(shot_id), media_type="image/jpeg",
                        headers={"cache-control": "private, max-age=3600"})


@router.get("/videos/{video_id}", dependencies=[Viewer])
def video(lib: Lib, video_id: int) -> FileResponse:
    path = lib.video_file(video_id)
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=kind, headers={"cache-control": "private, max-age=3600"})

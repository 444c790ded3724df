"""Keyframes, videos and the page itself.

Files are addressed by shot or video id, never by a path from the request, so only
files the index knows can be served. ``FileResponse`` answers HTTP Range requests
(206 Partial Content), which the browser's video element needs to seek to a shot.

Both routes are ``async``: the event loop answers from what the server holds for the current
generation of the index (a keyframe's bytes, a video's path: :mod:`.cache`), and only a miss goes
to a worker thread, through the library's own file reader, never behind a search. A keyframe has a
strong ``ETag`` (``If-None-Match`` gets 304); it stays behind the viewer role like every file.
"""
from __future__ import annotations

import mimetypes
import os
from pathlib import Path

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.types import Send

from .auth import Viewer
from .deps import Lib
from .library import NotFound

#: Keyframes and videos need a signed-in viewer (when the index has accounts): ``private`` keeps
#: shared caches (a proxy) from storing them; the browser keeps them an hour.
FILE_CACHE_CONTROL = "private, max-age=3600"
#: A single byte range up to this size (a player's seek asks for far less) is read in one go.
SMALL_RANGE = 1024 * 1024

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
async def keyframe(lib: Lib, shot_id: int, request: Request) -> Response:
    found = await lib.keyframe(shot_id)
    headers = {"cache-control": FILE_CACHE_CONTROL, "etag": found.etag}
    if _matches(request.headers.get("if-none-match", ""), found.etag):
        return Response(status_code=304, headers=headers)
    return Response(found.data, media_type="image/jpeg", headers=headers)


@router.get("/videos/{video_id}", dependencies=[Viewer])
async def video(lib: Lib, video_id: int) -> FileResponse:
    path = await lib.video_path(video_id)
    try:
        st = os.stat(path)  # a known path: one stat, no thread (FileResponse would take one for it)
    except OSError:
        raise NotFound(f"{path} was moved or deleted since it was indexed; re-run ingest") from None
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return VideoResponse(path, media_type=kind, stat_result=st, headers={"cache-control": FILE_CACHE_CONTROL})


class VideoResponse(FileResponse):
    """:class:`FileResponse` (Range, If-Range, 416, multipart ranges: all Starlette's) that reads a small
    single range at once: on the event loop when the page cache holds it all (``RWF_NOWAIT`` never
    waits for a disk), else in one worker-thread call, instead of one each to open, seek, read and close."""

    async def _handle_single_range(self, send: Send, start: int, end: int, file_size: int,
                                   send_header_only: bool) -> None:
        if send_header_only or end - start > SMALL_RANGE:
            return await super()._handle_single_range(send, start, end, file_size, send_header_only)
        data = _read_cached(self.path, start, end)
        if data is None:
            data = await anyio.to_thread.run_sync(_read_range, self.path, start, end)
        headers = MutableHeaders(raw=list(self.raw_headers))
        headers["content-range"] = f"bytes {start}-{start + len(data) - 1}/{file_size}"
        headers["content-length"] = str(len(data))
        await send({"type": "http.response.start", "status": 206, "headers": headers.raw})
        await send({"type": "http.response.body", "body": data, "more_body": False})


def _read_cached(path: str | os.PathLike, start: int, end: int) -> bytes | None:
    """Bytes ``start:end`` of a file if the page cache holds them all (Linux ``preadv2(RWF_NOWAIT)``),
    else ``None``: never waits for a disk."""
    nowait = getattr(os, "RWF_NOWAIT", None)
    if nowait is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        buf = bytearray(end - start)
        got = os.preadv(fd, [buf], start, nowait)
    except OSError:  # EAGAIN: not all cached; EOPNOTSUPP: a file system without it
        return None
    finally:
        os.close(fd)
    return bytes(buf) if got == len(buf) else None


def _read_range(path: str | os.PathLike, start: int, end: int) -> bytes:
    with open(path, "rb") as f:
        return os.pread(f.fileno(), end - start, start)


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, as RFC 9110 says for it) or ``*``."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags

"""The answers the server already holds, sent without FastAPI's routing (issue 33, "it holds under load").

Under load most requests are a keyframe or a result page that the server holds for the current
generation of the index (:mod:`.cache`), asked for by a client it has just identified. Routing,
dependency solving and validation cost FastAPI more than twice what sending such an answer does,
so :class:`FastPath` (an ASGI middleware *inside* :class:`~.security.Guard`, so the Host check has
run) answers these ``GET`` requests itself when, and only when, all of this holds:

* the request's credential (token, cookie, or none on an open server) maps to a principal the gate
  looked up under the current generation (:meth:`~.auth.Gate.known`): every principal may read, and
  keyframes and result pages need only the viewer role;
* the answer is in the library's cache for the current generation, under the key the route itself
  uses (built from parameters parsed the same way; anything unusual is left to the route).

Anything else (a first request, an unknown or revoked credential, a miss, a malformed parameter)
goes on to FastAPI unchanged, which does the full checks and fills the caches.
"""
from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .api import MAX_PAGE
from .media import FILE_CACHE_CONTROL, _matches


class FastPath:
    """ASGI middleware: cached keyframes and result pages for a known principal; the rest to the app."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            response = self._answer(scope)
            if response is not None:
                return await response(scope, receive, send)
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope) -> Response | None:
        path: str = scope["path"]
        if path.startswith("/keyframes/"):
            shot = _int(path[len("/keyframes/"):].removesuffix(".jpg")) if path.endswith(".jpg") else None
            if shot is None:
                return None
            request = Request(scope)
            state = request.app.state
            generation = state.library.generation.current()  # one read for the request (the gate shares it)
            if _known(state, request, generation) is None:
                return None
            found = state.library.cached_keyframe(shot, generation)
            if found is None:
                return None
            headers = {"cache-control": FILE_CACHE_CONTROL, "etag": found.etag}
            if _matches(request.headers.get("if-none-match", ""), found.etag):
                return Response(status_code=304, headers=headers)
            return Response(found.data, media_type="image/jpeg", headers=headers)
        if path not in ("/api/search", "/api/similar"):
            return None
        request = Request(scope)
        key = _search_key(request) if path == "/api/search" else _similar_key(request)
        if key is None:
            return None
        state = request.app.state
        generation = state.library.generation.current()
        if _known(state, request, generation) is None:
            return None
        body = state.library.pages.get(generation, key)
        return None if body is None else Response(body, media_type="application/json")


def _known(state, request: Request, generation: int):
    """The gate's principal for the request; ``generation`` is the library's, which the gate of
    :func:`~.app.create_app` shares (another gate reads its own)."""
    gate = state.gate
    return gate.known(request, generation if gate.generation is state.library.generation else None)


def _int(text: str | None) -> int | None:
    if text is None or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def _search_key(request: Request) -> tuple | None:
    """The key :meth:`~.library.Library.search_json` uses, if the parameters are plainly valid."""
    q = request.query_params
    query = q.get("q")
    top, offset = _int(q.get("top", "20")), _int(q.get("offset", "0"))
    try:
        min_score = float(q.get("min_score", "0"))
    except ValueError:
        return None
    video = q.get("video")
    video_id = _int(video) if video is not None else None
    if (not query or top is None or not 1 <= top <= MAX_PAGE or offset is None or not math.isfinite(min_score)
            or not 0 <= min_score <= 1 or (video is not None and video_id is None)):
        return None
    return ("search", query, top, min_score, offset, video_id)


def _similar_key(request: Request) -> tuple | None:
    q = request.query_params
    shot, top = _int(q.get("shot")), _int(q.get("top", "20"))
    if shot is None or top is None or not 1 <= top <= MAX_PAGE:
        return None
    return ("similar", shot, top)

"""The web app: a factory that assembles the routers, and :func:`serve` for the CLI.

The index is opened when the app is created, so a wrong ``--index`` fails at once
with the library's message; the concept model is loaded once in the lifespan (at
start-up), so the first image query does not wait for it.

Example::

    from vidconcept.web import serve
    serve(index="vidconcept-index", port=8000)   # http://127.0.0.1:8000/
"""
from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..api import Index
from ..errors import IndexError_, ModelError, VidconceptError
from . import api, concepts_api, media
from .library import Library, NotFound

log = logging.getLogger(__name__)

#: Only this machine can connect unless ``--host`` says otherwise: the app serves
#: the indexed video files and has no authentication.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def create_app(index_dir: str | os.PathLike | None = None, model_dir: str | os.PathLike | None = None, *,
               load_model: bool = True) -> FastAPI:
    """Build the app over an existing index.

    Args:
        index_dir: the index folder; ``None`` → the library's default.
        model_dir: the model bundle for image queries; ``None`` → the library's default.
        load_model: load the model at start-up. ``False`` defers it to the first image
            query, for apps that only answer concept queries (and quick tests).
    """
    index = Index(index_dir, model=model_dir)
    index.rebuild_columns_in_background()  # a server answers through SQLite meanwhile
    library = Library(index)
    app = FastAPI(title="vidconcept", version=__version__, lifespan=_lifespan,
                  description="Search an index of videos by concept; see the query syntax on the page.")
    app.state.library = library
    app.state.load_model = load_model
    app.include_router(api.router)
    app.include_router(concepts_api.router)
    app.include_router(media.router)
    app.mount("/static", StaticFiles(directory=media.STATIC_DIR), name="static")
    app.add_exception_handler(VidconceptError, _library_error)
    app.add_exception_handler(NotFound, _not_found)
    app.middleware("http")(_limit_upload)
    return app


async def _limit_upload(request: Request, call_next):
    """Refuse an oversized upload from its Content-Length, before the body is read and spooled."""
    size = request.headers.get("content-length", "")
    if request.method == "POST" and size.isdigit() and int(size) > api.MAX_UPLOAD_BYTES + api.MULTIPART_SLACK:
        return JSONResponse({"detail": f"upload is too large: at most {api.MAX_UPLOAD_BYTES // 2**20} MiB",
                             "error": "TooLarge"}, status_code=413)
    return await call_next(request)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    library: Library = app.state.library
    if app.state.load_model:
        try:
            await run_in_threadpool(library.load_model)
        except VidconceptError as exc:  # concept queries still work without the model
            log.warning("image queries will fail until the model loads: %s", exc)
    yield
    library.close()


def _status(exc: VidconceptError) -> int:
    """400 for what the request got wrong; 503 for what the server's index or model lacks."""
    return 503 if isinstance(exc, (ModelError, IndexError_)) else 400


async def _library_error(request: Request, exc: VidconceptError) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=_status(exc))


async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "error": "NotFound"}, status_code=404)


def serve(index: str | os.PathLike | None = None, model: str | os.PathLike | None = None,
          host: str | None = None, port: int | None = None) -> None:
    """Run the app with uvicorn until interrupted (``vidconcept serve``)."""
    import uvicorn

    app = create_app(index, model)
    host, port = host or DEFAULT_HOST, port or DEFAULT_PORT
    log.info("serving %s at http://%s:%d/ (Ctrl+C stops)", app.state.library.root, host, port)
    uvicorn.run(app, host=host, port=port, log_level="info")

"""The web app: a factory that assembles the routers, and :func:`serve` for the CLI.

The index is opened when the app is created, so a wrong ``--index`` fails at once
with the library's message; the concept model is loaded once in the lifespan (at
start-up), so the first image query does not wait for it. Who may do what is decided
in :mod:`.auth` (accounts and roles) and :mod:`.security` (hosts, origins, sizes, rates).

Example::

    from vidconcept.web import serve
    serve(index="vidconcept-index", port=8000)   # http://127.0.0.1:8000/
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..api import Index
from ..errors import IndexError_, ModelError, VidconceptError
from ..index.accounts import AccountError, AccountExistsError
from . import api, auth, concepts_api, media
from .fastpath import FastPath
from .library import Library, NotFound
from .security import Guard, Limit, RateLimiter, is_loopback, served_hosts

log = logging.getLogger(__name__)

#: Only this machine can connect unless ``--host`` says otherwise; another address needs
#: accounts (``vidconcept user add``) or ``read_only``.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: How often the interpreter may pass from one thread to another (Python's default: 5 ms). A search
#: thread gives the interpreter up at each SQLite call and waited up to that long to get it back from
#: the event loop; 0.5 ms gave 20-25% more searches and a lower p95 under serve_load (docs/web.md).
SWITCH_INTERVAL_S = 0.0005
#: Per client (account, else address): the model, the scoring of every shot and scrypt are the costly calls.
LIMITS = {"image": Limit(per_minute=30, burst=5), "suggest": Limit(per_minute=120, burst=20, concurrent=2),
          "retrain": Limit(per_minute=20, burst=6), "sign-in": Limit(per_minute=10, burst=5, concurrent=2)}


def create_app(index_dir: str | os.PathLike | None = None, model_dir: str | os.PathLike | None = None, *,
               load_model: bool = True, host: str = DEFAULT_HOST, read_only: bool = False,
               allowed_hosts: Iterable[str] = (), limits: dict[str, Limit] | None = None) -> FastAPI:
    """Build the app over an existing index.

    Args:
        index_dir: the index folder; ``None`` → the library's default.
        model_dir: the model bundle for image queries; ``None`` → the library's default.
        load_model: load the model at start-up. ``False`` defers it to the first image
            query, for apps that only answer concept queries (and quick tests).
        host: the address the server binds: another than this machine's needs accounts or ``read_only``.
        read_only: leave out every write endpoint (labels, concepts, accounts).
        allowed_hosts: host names clients use besides this machine's (e.g. a reverse proxy's).
        limits: per-client rate limits by kind (default :data:`LIMITS`).
    """
    index = Index(index_dir, model=model_dir)
    auth.check_policy(index, host, read_only)
    index.rebuild_columns_in_background()  # a server answers through SQLite meanwhile
    app = FastAPI(title="vidconcept", version=__version__, lifespan=_lifespan,
                  description="Search an index of videos by concept; see the query syntax on the page.")
    app.state.library = Library(index)
    app.state.gate = auth.Gate(Index(index.root, model=model_dir), host, read_only, RateLimiter(limits or LIMITS),
                               generation=app.state.library.generation)
    app.state.load_model = load_model
    for router in (api.router, concepts_api.router, auth.router, media.router):
        app.include_router(router)
    if not read_only:
        app.include_router(concepts_api.writes)
        app.include_router(auth.admin_router)
    app.mount("/static", StaticFiles(directory=media.STATIC_DIR), name="static")
    app.add_exception_handler(AccountError, _account_error)
    app.add_exception_handler(VidconceptError, _library_error)
    app.add_exception_handler(NotFound, _not_found)
    app.add_middleware(FastPath)  # inside Guard: the Host check runs first
    app.add_middleware(Guard, hosts=served_hosts(host, allowed_hosts),
                       body_limits={"/api/similar": api.MAX_UPLOAD_BYTES + api.MULTIPART_SLACK})
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    library: Library = app.state.library
    if app.state.load_model:
        try:
            await run_in_threadpool(library.load_model)
        except VidconceptError as exc:  # concept queries still work without the model
            log.warning("image queries will fail until the model loads: %s", exc)
        await run_in_threadpool(_warm_imports)
    yield
    app.state.gate.close()
    library.close()


def _warm_imports() -> None:
    """Import what training a user concept needs now: imported by the first retrain instead, it held
    the interpreter (and so every other request) for a second or more."""
    for module in ("sklearn.linear_model", "sklearn.model_selection"):
        try:
            importlib.import_module(module)
        except ImportError:  # the retrain will say what is missing
            pass


def _status(exc: VidconceptError) -> int:
    """400 for what the request got wrong; 503 for what the server's index or model lacks."""
    return 503 if isinstance(exc, (ModelError, IndexError_)) else 400


async def _library_error(request: Request, exc: VidconceptError) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=_status(exc))


async def _account_error(request: Request, exc: AccountError) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "error": type(exc).__name__},
                        status_code=409 if isinstance(exc, AccountExistsError) else 400)


async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "error": "NotFound"}, status_code=404)


def serve(index: str | os.PathLike | None = None, model: str | os.PathLike | None = None,
          host: str | None = None, port: int | None = None, read_only: bool = False,
          allowed_hosts: Iterable[str] = ()) -> None:
    """Run the app with uvicorn until interrupted (``vidconcept serve``)."""
    import uvicorn

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    host, port = host or DEFAULT_HOST, port or DEFAULT_PORT
    app = create_app(index, model, host=host, read_only=read_only, allowed_hosts=allowed_hosts)
    gate: auth.Gate = app.state.gate
    if gate.open_principal() is not None:
        log.warning("%s has no accounts: %s", app.state.library.root,
                    "anyone on this machine can use it" if is_loopback(host) else "serving it read-only to anyone")
    log.info("serving %s at http://%s:%d/%s (Ctrl+C stops)", app.state.library.root, host, port,
             " read-only" if read_only else "")
    uvicorn.run(app, host=host, port=port, log_level="info")

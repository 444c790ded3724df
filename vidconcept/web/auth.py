"""Who is asking: sign-in sessions (a cookie), API tokens (``Authorization: Bearer``) and roles.

Policy (docs/web.md, "Serving a team"): an index with accounts answers only signed-in users,
each route asking for a role (``viewer`` < ``editor`` < ``admin``); an index without accounts
served on this machine only is open to the one person using it (as before accounts existed), and
the page says so. :func:`check_policy` refuses to serve another address without accounts unless
the server is read-only.

Who a request is costs no thread and no query when it was looked up a moment ago: :class:`Gate`
keeps each looked-up principal under the SHA-256 of its secret (never the secret) only while the
index's database is unchanged (:class:`~.cache.Generation`: any commit, e.g. ``vidconcept user
revoke`` in another process, a role or password change or a sign-out, drops them all), and a
session's at most :data:`SESSION_CACHE_S`, so one that expires is refused at most that long after
its expiry (tokens do not expire). Concurrent requests with the same unknown credential share one lookup.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..api import Index
from ..errors import UsageError
from ..index.accounts import ROLES, Account, Role, local_actor
from .cache import Flights, Generation
from .security import RateLimiter, is_loopback

log = logging.getLogger(__name__)

COOKIE = "vidconcept_session"
#: How long a looked-up principal is reused while the database is unchanged (seconds): a session
#: (it expires) and an API token or the open principal (they change only by a commit).
SESSION_CACHE_S = 1.0
TOKEN_CACHE_S = 60.0
#: Principals remembered at most (a flood of new secrets empties it rather than growing it).
AUTH_CACHE_ITEMS = 10_000


@dataclass(frozen=True)
class Principal:
    """The account a request acts as; ``open`` when no accounts exist (localhost, one person)."""

    name: str
    role: Role
    open: bool = False

    def may(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class Gate:
    """The server's accounts (its own connection to the index, so sign-in checks never queue
    behind searches) and its policy: the bound address, read-only, rate limits."""

    def __init__(self, index: Index, bind: str, read_only: bool, limiter: RateLimiter,
                 generation: Generation | None = None):
        self.index, self.bind, self.read_only, self.limiter = index, bind, read_only, limiter
        self.local = is_loopback(bind)
        self._lock = threading.Lock()
        self._own_generation = generation is None
        self.generation = generation or Generation(index.root)
        self._known: dict[tuple[str, str], tuple[Principal, int, float]] = {}
        self._known_lock = threading.Lock()
        self._flights = Flights()

    def call(self, fn: Callable, *args, **kwargs):
        """Run an accounts call of the Python API under this gate's lock."""
        with self._lock:
            return fn(*args, **kwargs)

    def open_principal(self) -> Principal | None:
        """Without accounts, a local server lets its one user do everything; another address reads only."""
        if self.call(self.index.accounts.count):
            return None
        return Principal(local_actor(), "admin" if self.local and not self.read_only else "viewer", open=True)

    def principal(self, request: Request, generation: int | None = None) -> Principal | None:
        """Who the request is (``None``: nobody), looked up in the index's accounts (blocks: a thread).
        Kept for ``generation`` if given, read before (a later commit makes the entry stale)."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            account = self.call(self.index.accounts.token_user, auth[7:].strip())
        elif COOKIE in request.cookies:
            account = self.call(self.index.accounts.session_user, request.cookies[COOKIE])
        else:
            account = None
        who = _principal(account) if account else self.open_principal()
        if who is not None and generation is not None:
            with self._known_lock:
                if len(self._known) >= AUTH_CACHE_ITEMS:
                    self._known.clear()
                credential = _credential(request)
                ttl = SESSION_CACHE_S if credential[0] == "cookie" else TOKEN_CACHE_S
                self._known[credential] = (who, generation, time.monotonic() + ttl)
        return who

    def known(self, request: Request, generation: int | None = None) -> Principal | None:
        """The principal looked up for the same credential under ``generation`` (default: the current
        one, one ``PRAGMA data_version``), if fresh; no other I/O."""
        with self._known_lock:
            found = self._known.get(_credential(request))
        if found is None:
            return None
        who, _, until = found
        now = self.generation.current() if generation is None else generation
        return who if time.monotonic() < until and found[1] == now else None

    async def who(self, request: Request) -> Principal | None:
        """:meth:`known`, else :meth:`principal` in a worker thread (one at a time per credential)."""
        generation = self.generation.current()  # on the event loop only: the thread is given it
        return self.known(request, generation) or await self._flights.run(
            _credential(request), lambda: self.known(request),
            lambda: run_in_threadpool(self.principal, request, generation))

    def close(self) -> None:
        with self._lock:
            self.index.close()
        if self._own_generation:
            self.generation.close()


def check_policy(index: Index, bind: str, read_only: bool) -> None:
    """Refuse to serve another address than this machine's without accounts, unless read-only."""
    if not is_loopback(bind) and not read_only and not index.users():
        raise UsageError(f"serving {bind} lets other machines in, and {index.root} has no accounts: "
                         "add one first (`vidconcept user add NAME --role admin`), or serve --read-only")


def _principal(account: Account) -> Principal:
    return Principal(account.name, account.role)


def _credential(request: Request) -> tuple[str, str]:
    """What identifies a request's credential, as :meth:`Gate.principal` reads it: its kind and the
    SHA-256 of its secret (the secret itself is never kept)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return "bearer", hashlib.sha256(auth[7:].strip().encode()).hexdigest()
    if COOKIE in request.cookies:
        return "cookie", hashlib.sha256(request.cookies[COOKIE].encode()).hexdigest()
    return "none", ""


async def get_gate(request: Request) -> Gate:
    return request.app.state.gate


GateDep = Annotated[Gate, Depends(get_gate)]


async def current(request: Request, gate: GateDep) -> Principal:
    """The request's principal, or 401 (sign in, or send a token)."""
    who = await gate.who(request)
    if who is None:
        raise HTTPException(401, "sign in first (or send 'Authorization: Bearer TOKEN')",
                            headers={"www-authenticate": "Bearer"})
    return who


Who = Annotated[Principal, Depends(current)]


def require(role: Role) -> Callable[[Principal], Principal]:
    """A dependency: the principal if it has ``role`` (or more), else 403."""

    async def check(who: Who) -> Principal:
        if not who.may(role):
            raise HTTPException(403, f"this needs the {role} role; {who.name} is a {who.role}")
        return who

    check.__name__ = f"require_{role}"
    return check


Viewer = Depends(require("viewer"))
Editor = Annotated[Principal, Depends(require("editor"))]
Admin = Annotated[Principal, Depends(require("admin"))]


def limited(kind: str) -> Callable[..., AsyncIterator[None]]:
    """A dependency holding one of the client's ``kind`` slots (:class:`~.security.RateLimiter`) for the
    request; the client is its account when signed in, else its address (sign-in attempts)."""

    async def hold(request: Request, gate: GateDep) -> AsyncIterator[None]:
        who = await gate.who(request)
        client = who.name if who and not who.open else (request.client.host if request.client else "?")
        gate.limiter.acquire(kind, client)
        try:
            yield
        finally:
            gate.limiter.release(kind, client)

    hold.__name__ = f"limit_{kind}"
    return hold


# ---- routes ----------------------------------------------------------------------------------------
router = APIRouter(prefix="/api", tags=["accounts"])


class SignIn(BaseModel):
    user: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class Me(BaseModel):
    user: str
    role: str
    open: bool = Field(description="no accounts: open to anyone who can reach the server")
    read_only: bool
    local: bool = Field(description="the server binds this machine only")


@router.get("/me", response_model=Me)
def me(who: Who, gate: GateDep) -> dict:
    """Who the request acts as and what the server allows (the page hides what it may not do)."""
    return {"user": who.name, "role": who.role, "open": who.open, "read_only": gate.read_only, "local": gate.local}


@router.post("/session", response_model=Me, dependencies=[Depends(limited("sign-in"))])
def sign_in(body: SignIn, request: Request, response: Response, gate: GateDep) -> dict:
    """Sign in with a password: sets an HttpOnly session cookie (Secure over HTTPS)."""
    account = gate.call(gate.index.accounts.authenticate, body.user, body.password)
    client = request.client.host if request.client else "?"
    if account is None:
        gate.call(gate.index.accounts.record, body.user, "sign-in-failed", body.user, {"client": client})
        raise HTTPException(401, "wrong user name or password")
    secret = gate.call(gate.index.accounts.start_session, account.name)
    gate.call(gate.index.accounts.record, account.name, "sign-in", account.name, {"client": client})
    response.set_cookie(COOKIE, secret, httponly=True, samesite="lax", path="/",
                        secure=_https(request), max_age=7 * 24 * 3600)
    return {"user": account.name, "role": account.role, "open": False, "read_only": gate.read_only,
            "local": gate.local}


@router.delete("/session")
def sign_out(request: Request, response: Response, gate: GateDep) -> dict:
    if COOKIE in request.cookies:
        gate.call(gate.index.accounts.end_session, request.cookies[COOKIE])
    response.delete_cookie(COOKIE, path="/")
    return {"signed_out": True}


def _https(request: Request) -> bool:
    """Behind a TLS-terminating proxy the app sees http: the proxy says https in X-Forwarded-Proto."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


class NewToken(BaseModel):
    label: str | None = Field(None, max_length=200)


@router.post("/tokens", status_code=201)
def add_token(body: NewToken, who: Who, gate: GateDep) -> dict:
    """An API token for the signed-in user's scripts: the secret is in this answer only."""
    if who.open:
        raise HTTPException(400, "no accounts: a token needs one (`vidconcept user add`)")
    token, secret = gate.call(gate.index.add_token, who.name, body.label, actor=who.name)
    return {"id": token.id, "user": token.user, "label": token.label, "secret": secret}


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: int, who: Who, gate: GateDep) -> dict:
    """Revoke one of your tokens (an admin: anyone's)."""
    owned = {t.id for t in gate.call(gate.index.tokens, who.name)}
    if token_id not in owned and not who.may("admin"):
        raise HTTPException(404, f"you have no token {token_id}")
    gate.call(gate.index.revoke_token, token_id, actor=who.name)
    return {"revoked": token_id}


@router.get("/audit")
def audit(who: Editor, gate: GateDep, limit: int = 100, target: str | None = None) -> list[dict]:
    """Who changed what and when, newest first (editors and admins)."""
    return [e.to_dict() for e in gate.call(gate.index.audit, min(max(limit, 1), 1000), target=target)]


@router.get("/users")
def users(who: Admin, gate: GateDep) -> list[dict]:
    return [{"name": u.name, "role": u.role, "created_at": u.created_at} for u in gate.call(gate.index.users)]


class NewUser(BaseModel):
    name: str
    password: str = Field(max_length=1024)
    role: str = "viewer"


admin_router = APIRouter(prefix="/api/users", tags=["accounts"])


@admin_router.post("", status_code=201)
def add_user(body: NewUser, who: Admin, gate: GateDep) -> dict:
    account = gate.call(gate.index.add_user, body.name, body.password, body.role, actor=who.name)
    return {"name": account.name, "role": account.role, "created_at": account.created_at}


@admin_router.delete("/{name}")
def remove_user(name: str, who: Admin, gate: GateDep) -> dict:
    gate.call(gate.index.remove_user, name, actor=who.name)
    return {"removed": name}

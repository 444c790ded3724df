"""What the server refuses before a route runs: foreign hosts, cross-site writes, oversized bodies,
and a client asking for more than its share of the expensive work (issue 33).

* **Host** (DNS rebinding): a page on ``attacker.example`` whose name the attacker re-points at
  127.0.0.1 reaches a local server with ``Host: attacker.example``. Only this machine's names, IP
  literals (a rebinding attack always sends its own name) and ``--allowed-host`` names are served.
* **Origin** (cross-site request forgery): a browser names the page that sent a request; a
  state-changing request from another site is refused. Scripts send no ``Origin`` and need a token.
* **Body size**, counted while the body streams in: a chunked upload has no ``Content-Length``, so
  the limit is enforced on the bytes received, and an oversized body is refused without reading it all.
* **Rate limits** per client (account, else address) on image search, suggestions and retraining.

Example::

    app.add_middleware(Guard, hosts=served_hosts("127.0.0.1"), body_limits={"/api/similar": 10 * 2**20})
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Bodies larger than this are refused unless a path has its own limit (JSON label lists are small).
DEFAULT_BODY_LIMIT = 1024 * 1024


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only."""
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def served_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names the server answers to: localhost names, the bound address, this machine's names
    when it binds every address, and ``extra`` (``--allowed-host``). IP literals are always served."""
    names = set(LOCAL_NAMES) | {bind.lower().strip("[]")} | {h.lower() for h in extra}
    if not is_loopback(bind):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names)


def _host_name(value: str) -> str:
    """The name part of a ``Host`` header or URL authority, lower case, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(host: str, served: frozenset[str]) -> bool:
    name = _host_name(host)
    if name in served:
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def same_site(headers: Headers, served: frozenset[str]) -> bool:
    """Whether a state-changing request may come from this page: its ``Origin`` is the host it was
    sent to (or a served name), or it is not a browser's cross-site request."""
    origin = headers.get("origin")
    if origin is None:  # old browsers send Sec-Fetch-Site without Origin on same-origin requests
        return headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    if origin == "null":
        return False
    netloc = urlsplit(origin).netloc.lower()
    return netloc == headers.get("host", "").lower() or _host_name(netloc) in served


class Guard:
    """ASGI middleware: Host allow-list, Origin check on writes, and streamed body limits."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str], body_limits: dict[str, int] | None = None,
                 default_limit: int = DEFAULT_BODY_LIMIT):
        self.app, self.hosts = app, hosts
        self.body_limits, self.default_limit = body_limits or {}, default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if not host_allowed(headers.get("host", ""), self.hosts):
            log.warning("refused Host %r (add --allowed-host if clients use that name)", headers.get("host"))
            return await _refuse(scope, receive, send, 421, "this server does not serve that host name; "
                                 "start it with --allowed-host NAME to serve it", "HostNotAllowed")
        if scope["method"] not in SAFE_METHODS and not same_site(headers, self.hosts):
            return await _refuse(scope, receive, send, 403, "cross-site request refused", "CrossSite")
        limit = self.body_limits.get(scope["path"], self.default_limit)
        size = headers.get("content-length", "")
        if size.isdigit() and int(size) > limit:
            return await _refuse(scope, receive, send, 413, _too_large(limit), "TooLarge")
        await self.app(scope, _counting(receive, limit), send)


def _too_large(limit: int) -> str:
    return f"request is too large: at most {limit / 2**20:g} MiB"


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises 413 once the body streamed in exceeds ``limit`` (FastAPI re-raises an
    HTTPException from body parsing, so the route never runs and the rest is never read)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, _too_large(limit))
        return message

    return wrapped


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str, error: str) -> None:
    await JSONResponse({"detail": detail, "error": error}, status_code=status)(scope, receive, send)


# ---- rate limits --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limit:
    """``per_minute`` requests a minute with bursts of ``burst``, and at most ``concurrent`` at once."""

    per_minute: float
    burst: int
    concurrent: int = 1


@dataclass
class _Bucket:
    tokens: float
    at: float
    running: int = 0


@dataclass
class RateLimiter:
    """Token buckets per (client, kind): one client cannot starve the others of the model or CPU."""

    limits: dict[str, Limit]
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self, kind: str, client: str) -> None:
        """Take a slot or raise 429 with ``Retry-After``; pair with :meth:`release`."""
        limit, now = self.limits[kind], time.monotonic()
        with self._lock:
            b = self._buckets.setdefault((kind, client), _Bucket(limit.burst, now))
            b.tokens = min(limit.burst, b.tokens + (now - b.at) * limit.per_minute / 60)
            b.at = now
            if b.running >= limit.concurrent:
                raise _too_many(kind, 1)
            if b.tokens < 1:
                raise _too_many(kind, (1 - b.tokens) * 60 / limit.per_minute)
            b.tokens -= 1
            b.running += 1

    def release(self, kind: str, client: str) -> None:
        with self._lock:
            self._buckets[(kind, client)].running -= 1


def _too_many(kind: str, wait_s: float) -> HTTPException:
    wait = max(1, round(wait_s))
    return HTTPException(429, f"too many {kind} requests from this client; retry in {wait} s",
                         headers={"retry-after": str(wait)})

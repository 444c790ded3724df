"""What the server may remember between requests, and for how long: until the index changes.

A team's searches repeat (the same query paged, the same keyframes shown to everyone), and the
answers only change when the database does. :class:`Generation` tells, in a few microseconds and
without a thread, whether anything committed since (any connection, any process: an ingest, a
retrain, ``vidconcept user revoke``): SQLite's ``PRAGMA data_version`` on a connection of its own
that reads no data. :class:`GenerationCache` keeps answers for the current generation only, so a
cached answer is always one a request could have got from a snapshot taken after the last commit
it saw. The order matters: read the generation *before* computing an answer, store it under that
generation, and a later commit makes it unreachable.

Example::

    gen = Generation(index.root)
    cache = GenerationCache(max_bytes=32 * 2**20)
    g = gen.current()
    page = cache.get(g, key)
    if page is None:
        page = compute()        # sees the state of generation g or a later one
        cache.put(g, key, page, size=len(page))
"""
from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..index.store import DB_NAME


class Generation:
    """A number that changes whenever a commit reaches the index's database (from any connection)."""

    def __init__(self, root: str | Path):
        path = Path(root).resolve() / DB_NAME
        # read-only, autocommit: it never holds a transaction open, so it never pins an old snapshot
        self._conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, check_same_thread=False,
                                     isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 1000")
        self._lock = threading.Lock()

    def current(self) -> int:
        with self._lock:
            return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class GenerationCache:
    """Least-recently-used answers of one generation, at most ``max_items`` and ``max_bytes``;
    a new generation empties it. Thread-safe (the event loop reads, worker threads fill)."""

    def __init__(self, max_items: int = 1024, max_bytes: int = 32 * 2**20):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._generation: int | None = None
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, generation: int, key: Hashable) -> Any | None:
        with self._lock:
            if generation != self._generation:
                self.misses += 1
                return None
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found[0]

    def put(self, generation: int, key: Hashable, value: Any, size: int = 1) -> None:
        with self._lock:
            if self._generation is None or generation > self._generation:
                self._items.clear()
                self._bytes, self._generation = 0, generation
            elif generation < self._generation:
                return  # computed before a commit another request has already seen
            if size > self.max_bytes:
                return
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while len(self._items) > self.max_items or self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes, self._generation = 0, None


class Flights:
    """One computation at a time per key on an event loop: who asks for a key that is being computed
    waits for it, then looks in the cache again (``lookup``), and computes it only if still missing
    (e.g. the first one failed). After a commit empties a cache, 32 clients asking for the same
    answer cost one computation, not 32."""

    def __init__(self):
        self._running: dict[Hashable, asyncio.Future] = {}

    async def run(self, key: Hashable, lookup: Callable[[], Any | None], compute: Callable[[], Awaitable[Any]]) -> Any:
        loop = asyncio.get_running_loop()
        running = self._running.get(key)
        if running is not None and running.get_loop() is loop:
            await asyncio.shield(running)
            found = lookup()
            if found is not None:
                return found
        own = loop.create_future()
        self._running[key] = own
        try:
            return await compute()
        finally:
            own.set_result(None)
            if self._running.get(key) is own:
                del self._running[key]

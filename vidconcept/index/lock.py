"""An advisory write lock per index folder, so two ingests never interleave.

``flock`` is released by the kernel when the process dies (even on ``kill -9``),
so a crashed ingest never leaves a stale lock behind. Searches take no lock: SQLite
in WAL mode lets readers go on while the one writer writes.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import IndexLockedError

LOCK_NAME = "write.lock"


@contextlib.contextmanager
def write_lock(root: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold the index's write lock; wait up to ``wait`` seconds for it, then raise."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    with open(path, "a+") as fh:
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    raise IndexLockedError(
                        f"{root}: index is locked by {holder} (an ingest is running); "
                        "retry later or pass --wait SECONDS"
                    ) from None
                time.sleep(0.1)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}")
            fh.flush()
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)

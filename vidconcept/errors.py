"""Exception hierarchy: every error a user can cause is a :class:`VidconceptError`.

The CLI turns these into one line on stderr and a non-zero exit status; anything
else is a bug and keeps its traceback. Messages say what went wrong *and* what to do.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class VidconceptError(Exception):
    """Base class of all errors a user can act on."""

    exit_code = 1


class UsageError(VidconceptError):
    """Bad arguments or configuration (cron exit status 2)."""

    exit_code = 2


class VideoError(VidconceptError):
    """A video file that cannot be opened or decoded."""


class ModelError(VidconceptError):
    """A model bundle or backbone that cannot be built or loaded (a configuration error)."""

    exit_code = 2


class DatasetError(VidconceptError):
    """A data set spec, folder or image that cannot be read."""


class ImageError(VidconceptError):
    """An image file or upload that cannot be decoded."""


class IndexError_(VidconceptError):
    """An index folder that cannot be opened or written (a configuration error)."""

    exit_code = 2


class IndexLockedError(IndexError_):
    """Another process holds the index's write lock (cron exit status 3)."""

    exit_code = 3


class ShardError(VidconceptError):
    """A shard of a sharded index that cannot be opened or did not answer (see docs/shards.md)."""


class QueryError(VidconceptError):
    """A malformed search query."""


class UnknownNameError(VidconceptError, KeyError):
    """A name (concept, backbone, strategy, detector) that is not known."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name = kind, name
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}{hint}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


def unknown(kind: str, name: str, known: Iterable[str]) -> UnknownNameError:
    """Build the error for an unknown name, suggesting the closest known ones."""
    return UnknownNameError(kind, name, known)

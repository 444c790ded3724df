"""Dependencies shared by the routers."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .library import Library


async def get_library(request: Request) -> Library:
    """The one :class:`Library` the app opened at start-up (``app.state.library``); ``async`` so that
    FastAPI does not send it to a worker thread (a thread hop costs more than the lookup)."""
    return request.app.state.library


Lib = Annotated[Library, Depends(get_library)]

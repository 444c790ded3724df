"""Reading images, in one place: a file, an upload's bytes or an array → RGB.

Training photos, query images and web uploads all go through :func:`load_rgb`, so greyscale,
palette and CMYK files become RGB the same way everywhere and a bad file is one
:class:`~vidconcept.errors.ImageError` naming it.

Example::

    image = load_rgb("photo.jpg")                  # PIL RGB image
    pixels = load_array(upload_bytes, max_side=1024)  # uint8 H×W×3, shrunk to fit 1024 px
"""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from .errors import ImageError

#: What :func:`load_array` accepts: a path, encoded bytes, or pixels already decoded.
ImageSource = str | os.PathLike | bytes | np.ndarray


def load_rgb(source: str | os.PathLike | bytes, max_side: int | None = None) -> Image.Image:
    """Decode ``source`` as an RGB image, shrunk to fit ``max_side`` pixels when given."""
    name = "image bytes" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            if max_side:
                image.thumbnail((max_side, max_side))
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name}: cannot read image: {exc}") from exc


def load_array(source: ImageSource, max_side: int | None = None) -> np.ndarray:
    """Pixels of ``source``; an array passes through as it is (the model converts its layout)."""
    if isinstance(source, np.ndarray):
        return source
    return np.asarray(load_rgb(source, max_side))

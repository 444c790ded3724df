"""The one image loader: files, upload bytes and arrays → RGB; a bad file is one ImageError naming it."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vidconcept.errors import ImageError, VidconceptError
from vidconcept.images import load_array, load_rgb


def _png(mode: str, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "RGB"])
def test_every_mode_becomes_rgb(mode, tmp_path):
    path = tmp_path / f"{mode}.png"
    path.write_bytes(_png(mode))
    assert load_rgb(path).mode == "RGB" and load_array(_png(mode)).shape == (30, 40, 3)


def test_max_side_shrinks_keeping_the_aspect_ratio():
    assert load_array(_png("RGB", (400, 100)), max_side=100).shape == (25, 100, 3)


def test_an_array_passes_through():
    pixels = np.zeros((5, 6), np.uint8)
    assert load_array(pixels) is pixels


@pytest.mark.parametrize("source", [b"not an image", "missing.jpg"], ids=["bytes", "missing-file"])
def test_bad_input_is_an_image_error(source, tmp_path):
    with pytest.raises(ImageError, match="cannot read image") as err:
        load_rgb(source if isinstance(source, bytes) else tmp_path / source)
    assert isinstance(err.value, VidconceptError)

"""Tiny synthetic clips with known transitions for the shot tests.

Wraps :mod:`vidconcept.testing.videos` at a small size (320x180, 25 fps) so a
clip renders and encodes in well under a second. Each builder returns the
written path and its ground truth (``testvideo.json`` schema).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data

from vidconcept.testing.videos import Clip, ShotSpec, Transition, write_video

SIZE = (320, 180)
FPS = 25

PHOTOS = {
    "coffee": skimage.data.coffee,
    "chelsea": skimage.data.chelsea,
    "astronaut": skimage.data.astronaut,
    "rocket": skimage.data.rocket,
    "coins": skimage.data.coins,
    "camera": skimage.data.camera,
    "moon": skimage.data.moon,
}


def shot(name: str, frames: int = 40, move: str = "zoom_in", **kw) -> ShotSpec:
    return ShotSpec(PHOTOS[name](), frames, name, move, **kw)


def make_clip(tmp: Path, name: str, shots: list[ShotSpec], transitions: list[Transition],
              rotation: int = 0, **kw) -> tuple[Path, dict]:
    """Render, encode and return ``(path, truth)``."""
    clip = Clip(shots, transitions, size=SIZE, fps=FPS, **kw)
    path = tmp / f"{name}.mp4"
    truth = clip.write(path, rotation=rotation)
    return path, truth


def cut() -> Transition:
    return Transition("cut")


def dissolve(frames: int = 16) -> Transition:
    return Transition("dissolve", frames)


def fade(frames: int = 10, black: int = 6) -> Transition:
    return Transition("fade", frames, black)


def write_frames(path: Path, frames: list[np.ndarray], fps: int = FPS) -> Path:
    write_video(iter(frames), path, fps)
    return path


def wipe(frames: int = 12) -> Transition:
    return Transition("wipe", frames)


def mosaic(frames: int = 16) -> Transition:
    return Transition("mosaic", frames)

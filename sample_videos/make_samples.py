"""Generate the sample videos and their ground truth (deterministic).

Three short multi-shot clips (640x360, 25 fps, H.264) filmed from photographs
that scikit-image and scikit-learn ship, each shot with a Ken Burns camera
move, joined by hard cuts, dissolves and fades through black, some with a
flash or a moving caption inside a shot. Next to each ``<name>.mp4`` goes
``<name>.json`` (schema of ``../shared/videos/testvideo.json`` plus
``concepts`` per shot label). See :mod:`vidconcept.testing.videos`.

Usage::

    python sample_videos/make_samples.py [OUT_DIR]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data
from sklearn.datasets import load_sample_images

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vidconcept.testing.videos import Clip, ShotSpec, Transition  # noqa: E402

HERE = Path(__file__).resolve().parent


def _sklearn(name: str) -> np.ndarray:
    images = load_sample_images()
    return images.images[[Path(f).stem for f in images.filenames].index(name)]


def clips() -> dict[str, Clip]:
    """The sample clips, by file stem."""
    sk = skimage.data
    return {
        "breakfast_cat_space": Clip(
            [ShotSpec(sk.coffee(), 55, "coffee", "zoom_in", ["espresso", "cup"]),
             ShotSpec(sk.chelsea(), 60, "chelsea", "pan_right", ["cat", "tabby"]),
             ShotSpec(sk.astronaut(), 60, "astronaut", "zoom_out", ["person", "astronaut", "flag"]),
             ShotSpec(sk.rocket(), 55, "rocket", "pan_left", ["rocket", "launch pad"])],
            [Transition("cut"), Transition("dissolve", 20), Transition("fade", 12, 8)],
            lead_black=10),
        "galaxy_temple_flower": Clip(
            [ShotSpec(sk.hubble_deep_field(), 55, "hubble_deep_field", "zoom_in", ["galaxy", "stars", "space"]),
             ShotSpec(_sklearn("china"), 60, "china", "pan_right", ["temple", "building", "tree"],
                      flashes=[(25, 2)]),
             ShotSpec(_sklearn("flower"), 55, "flower", "zoom_out", ["flower", "dahlia"]),
             ShotSpec(sk.chelsea(), 50, "chelsea", "zoom_in", ["cat", "tabby"])],
            [Transition("fade", 10, 6), Transition("cut"), Transition("dissolve", 16)],
            tail_black=12),
        "lab_coins_camera": Clip(
            [ShotSpec(sk.immunohistochemistry(), 50, "immunohistochemistry", "pan_left", ["microscopy", "cells"]),
             ShotSpec(sk.coins(), 55, "coins", "zoom_in", ["coin", "money"]),
             ShotSpec(sk.camera(), 60, "camera", "pan_right", ["person", "camera", "tripod"],
                      text="vidconcept demo"),
             ShotSpec(sk.coffee(), 45, "coffee", "zoom_out", ["espresso", "cup"])],
            [Transition("dissolve", 18), Transition("cut"), Transition("fade", 10, 4)]),
    }


def main(out: Path = HERE) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, clip in clips().items():
        path = out / f"{name}.mp4"
        truth = clip.write(path)
        print(f"{path}: {truth['frames']} frames, {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)

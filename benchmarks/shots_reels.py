"""Generated check: hard cuts in black-and-white, low-resolution reels of real photos.

Not real footage and never a headline figure: it renders reels of Scene-15
photos (``../shared/data/scene15``, greyscale, about 200-300 px) filmed with
slow zooms and pans (:mod:`vidconcept.testing.videos`), each shot 1-3 s, joined by
hard cuts only, encoded as H.264 at 150-256 px height, and reports hard-cut recall
and precision of ours, ``detect-adaptive`` and ``detect-content``. Reels from
the ``train`` photos are the dev split, reels from the ``test`` photos the
held-out one (the detector was never tuned on those).

Usage::

    python benchmarks/shots_reels.py [--reels 2] [--shots 40] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from shots import RUNS  # noqa: E402

from vidconcept.metrics.shots import BoundaryScore, score_typed  # noqa: E402
from vidconcept.testing.videos import Clip, ShotSpec, Transition  # noqa: E402

SCENE15 = Path(os.environ.get("VIDCONCEPT_SHARED", ROOT.parent / "shared")) / "data" / "scene15"
MOVES = ("zoom_in", "zoom_out", "pan_right", "pan_left", "static")
#: Frame sizes of the reels (low resolution, as in film archives' proxies): one per reel, in turn.
SIZES = ((200, 150), (266, 200), (340, 256))
FPS = 25


def photos(split: str) -> list[Path]:
    return sorted((SCENE15 / split).glob("*/*.jpg"))


def reel(paths: list[Path], rng: random.Random, size: tuple[int, int]) -> Clip:
    shots = []
    for path in paths:
        image = np.asarray(Image.open(path).convert("L"))
        shots.append(ShotSpec(image, rng.randint(25, 75), path.parent.name, rng.choice(MOVES)))
    return Clip(shots, [Transition("cut")] * (len(shots) - 1), size=size, fps=FPS)


def run(split: str, reels: int, shots: int, seed: int, workdir: Path) -> dict:
    rng = random.Random(seed)
    pool = photos(split)
    totals = {name: BoundaryScore(0, 0, 0) for name in RUNS}
    per_reel = {}
    for i in range(reels):
        path = workdir / f"{split}_{i}.mp4"
        truth = reel(rng.sample(pool, shots), rng, SIZES[i % len(SIZES)]).write(path)
        per_reel[path.stem] = {}
        for name, detect in RUNS.items():
            score = score_typed(detect(path), truth)["cuts"]
            totals[name] = totals[name] + score
            per_reel[path.stem][name] = score.to_dict()
    return {"reels": per_reel, "total": {name: s.to_dict() for name, s in totals.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reels", type=int, default=2, help="reels per split")
    parser.add_argument("--shots", type=int, default=40, help="photos (shots) per reel")
    parser.add_argument("--split", choices=("dev", "heldout", "both"), default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not SCENE15.is_dir():
        print(json.dumps({"skipped": f"{SCENE15} not found"}))
        return 0
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for split, folder, seed in (("dev", "train", 1), ("heldout", "test", 2)):
            if args.split in (split, "both"):
                result[split] = run(folder, args.reels, args.shots, seed, Path(tmp))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for split, r in result.items():
            for name, s in r["total"].items():
                print(f"{split:8s} {name:9s} cuts P {s['precision']:.3f} R {s['recall']:.3f} "
                      f"F1 {s['f1']:.3f} (missed {s['false_negatives']}, false {s['false_positives']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

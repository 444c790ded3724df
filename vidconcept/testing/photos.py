"""Small labelled image sets generated from a few photos, for tests and smoke runs.

Each source photo becomes a concept; random crops and flips give its images. The same
images can be written as any supported layout (``folder:``, ``voc:``, ``csv:``), so the
readers, the trainer and the evaluation run on real photos without external data::

    import skimage.data
    spec = write_folder_set(tmp / "set", {"coffee": skimage.data.coffee(), "cat": skimage.data.chelsea()})
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def augmented_crops(image: np.ndarray, count: int, size: int, rng: np.random.Generator) -> list[Image.Image]:
    """``count`` random square crops (60–95 % of the short side), every other one flipped, resized to ``size``."""
    h, w = image.shape[:2]
    crops = []
    for i in range(count):
        side = int(min(h, w) * rng.uniform(0.6, 0.95))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = image[y:y + side, x:x + side]
        crop = crop[:, ::-1] if i % 2 else crop
        crops.append(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BICUBIC))
    return crops


def write_folder_set(root: Path, sources: dict[str, np.ndarray], per_concept: int = 6, size: int = 80,
                     seed: int = 0, splits: tuple[str, ...] = ()) -> str:
    """Write ``root/[split/]<concept>/<n>.jpg`` and return the ``folder:`` spec."""
    rng = np.random.default_rng(seed)
    for split in splits or ("",):
        for concept, image in sources.items():
            folder = Path(root) / split / concept
            folder.mkdir(parents=True, exist_ok=True)
            for n, crop in enumerate(augmented_crops(image, per_concept, size, rng)):
                crop.save(folder / f"{n}.jpg", quality=90)
    return f"folder:{root}"


def write_voc_set(root: Path, sources: dict[str, np.ndarray], split: str = "train", per_concept: int = 4,
                  size: int = 80, seed: int = 0, difficult_every: int = 0) -> str:
    """Write a VOC layout (one positive concept per image); every ``difficult_every``-th positive is a 0."""
    rng = np.random.default_rng(seed)
    (Path(root) / "JPEGImages").mkdir(parents=True, exist_ok=True)
    main = Path(root) / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    ids, owner = [], []
    for concept, image in sources.items():
        for crop in augmented_crops(image, per_concept, size, rng):
            image_id = f"{len(ids):06d}"
            crop.save(Path(root) / "JPEGImages" / f"{image_id}.jpg", quality=90)
            ids.append(image_id)
            owner.append(concept)
    (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    for concept in sources:
        rows = []
        for n, (image_id, own) in enumerate(zip(ids, owner)):
            value = 1 if own == concept else -1
            if value == 1 and difficult_every and n % difficult_every == 0:
                value = 0
            rows.append(f"{image_id} {value:2d}\n")
        (main / f"{concept}_{split}.txt").write_text("".join(rows))
    return f"voc:{root}"

"""Labelled image sets read from spec strings, with unknown labels kept as a mask.

Spec strings name a reader and a path:

* ``voc:DIR``: PASCAL VOC layout: ``JPEGImages/``, ``ImageSets/Main/{split}.txt`` and
  ``ImageSets/Main/<concept>_{split}.txt`` with 1 (present), -1 (absent) and 0
  ("difficult", treated as unknown as VOC does).
* ``folder:DIR``: one sub-folder per concept (names lower-cased); an image is positive for
  its folder's concept and negative for the other concepts of the set. If ``DIR`` has
  ``train``/``test``… sub-folders, ``split`` picks one.
* ``csv:FILE``: header ``path,concept1,…``; cells 1, 0 or empty (unknown); relative paths
  are relative to the CSV file.

Every concept a data set does not annotate is unknown, so sets with different concept
lists can be mixed (:func:`merge`): their union is the concept pool. Example::

    data = open_datasets(["voc:../shared/data/voc2007", "folder:../shared/data/scene15"], split="train")
    data.labels[i], data.mask[i]        # [C] 1/0 labels, 1 where judged
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vidconcept.errors import DatasetError, ImageError, unknown
from vidconcept.images import load_rgb
from vidconcept.registry import Registry

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
DEFAULT_SPLIT = "train"


@dataclass
class LabelledImages:
    """Images with multi-label annotations.

    Attributes:
        spec: the spec string(s) it was read from.
        paths: one image file per row.
        concepts: one name per label column.
        labels: float32 ``[N, C]``, 1 = present, 0 = absent (meaningless where unknown).
        mask: float32 ``[N, C]``, 1 = judged, 0 = unknown.
        strata: optional int ``[N]`` sampling stratum of each image (-1 = not pooled) and
            ``inclusion`` the probability each stratum's images were judged; used by
            inferred AP. ``None`` means complete judgments of the pooled images.
    """

    spec: str
    paths: list[Path]
    concepts: list[str]
    labels: np.ndarray
    mask: np.ndarray
    strata: np.ndarray | None = None
    inclusion: dict[int, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, index: int) -> Image.Image:
        """The RGB image of row ``index`` (greyscale converted); unreadable → :class:`DatasetError`."""
        try:
            return load_rgb(self.paths[index])
        except ImageError as exc:
            raise DatasetError(str(exc)) from exc

    def subset(self, rows: np.ndarray | list[int]) -> "LabelledImages":
        """The rows ``rows`` (e.g. a quick sample for a smoke run)."""
        rows = np.asarray(rows, dtype=int)
        strata = None if self.strata is None else self.strata[rows]
        return LabelledImages(self.spec, [self.paths[i] for i in rows], self.concepts, self.labels[rows],
                              self.mask[rows], strata, dict(self.inclusion))


Reader = Callable[[Path, str], LabelledImages]
_READERS: Registry[Reader] = Registry("data set kind")


def register_reader(kind: str) -> Callable[[Reader], Reader]:
    """Register ``reader(path, split)`` for specs ``kind:PATH``; duplicates raise."""
    return _READERS.register(kind)


def list_readers() -> list[str]:
    return _READERS.names()


def open_dataset(spec: str, split: str = DEFAULT_SPLIT) -> LabelledImages:
    """Read one ``kind:PATH`` spec for ``split``."""
    kind, sep, path = spec.partition(":")
    if not sep or not path:
        raise DatasetError(f"bad data set spec {spec!r}: expected KIND:PATH with KIND one of {', '.join(list_readers())}")
    if kind not in _READERS:
        raise DatasetError(str(unknown(_READERS.kind, kind, _READERS)) + f" in spec {spec!r}")
    data = _READERS[kind](Path(path).expanduser(), split)
    if not len(data):
        raise DatasetError(f"data set {spec!r} (split {split!r}) has no images")
    data.spec = spec
    log.info("read %s split %s: %d images, %d concepts", spec, split, len(data), len(data.concepts))
    return data


def open_datasets(specs: list[str], split: str = DEFAULT_SPLIT) -> LabelledImages:
    """Read and :func:`merge` several specs."""
    return merge([open_dataset(spec, split) for spec in specs])


def merge(sets: list[LabelledImages]) -> LabelledImages:
    """Concatenate data sets over the union of their concepts; unannotated concepts are unknown."""
    if not sets:
        raise DatasetError("no data set given")
    if len(sets) == 1:
        return sets[0]
    concepts = sorted({c for s in sets for c in s.concepts})
    column = {c: i for i, c in enumerate(concepts)}
    labels, mask = [], []
    for s in sets:
        lab = np.zeros((len(s), len(concepts)), np.float32)
        msk = np.zeros_like(lab)
        cols = [column[c] for c in s.concepts]
        lab[:, cols], msk[:, cols] = s.labels, s.mask
        labels.append(lab)
        mask.append(msk)
    paths = [p for s in sets for p in s.paths]
    return LabelledImages("+".join(s.spec for s in sets), paths, concepts, np.concatenate(labels), np.concatenate(mask))


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what} {path} does not exist or is not a folder")
    return path


def _read_lines(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


@register_reader("voc")
def read_voc(root: Path, split: str) -> LabelledImages:
    """PASCAL VOC classification labels of ``split`` (1 → positive, -1 → negative, 0 → unknown)."""
    main = _require_dir(root / "ImageSets" / "Main", "VOC label folder")
    ids = [row[0] for row in _read_lines(main / f"{split}.txt")] if (main / f"{split}.txt").is_file() else None
    if ids is None:
        raise DatasetError(f"VOC split file {main / f'{split}.txt'} does not exist")
    suffix = f"_{split}.txt"
    files = sorted(p for p in main.glob(f"*{suffix}"))
    concepts = [p.name[: -len(suffix)].lower() for p in files]
    row = {image_id: i for i, image_id in enumerate(ids)}
    labels = np.zeros((len(ids), len(concepts)), np.float32)
    mask = np.zeros_like(labels)
    for c, path in enumerate(files):
        for image_id, value in _read_lines(path):
            if image_id in row and value != "0":
                labels[row[image_id], c] = float(value == "1")
                mask[row[image_id], c] = 1.0
    paths = [root / "JPEGImages" / f"{image_id}.jpg" for image_id in ids]
    return LabelledImages(f"voc:{root}", paths, concepts, labels, mask)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


@register_reader("folder")
def read_folder(root: Path, split: str) -> LabelledImages:
    """One sub-folder per concept; ``root/split`` is used when it exists."""
    _require_dir(root, "data set folder")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    if (root / split).is_dir():
        root, subdirs = root / split, sorted(p for p in (root / split).iterdir() if p.is_dir())
    elif any(p.name in {"train", "test", "val"} for p in subdirs):
        raise DatasetError(f"{root} has no {split!r} sub-folder (it has {', '.join(p.name for p in subdirs)})")
    if not subdirs:
        raise DatasetError(f"{root} has no concept sub-folders")
    concepts = [p.name.lower() for p in subdirs]
    paths, rows = [], []
    for c, folder in enumerate(subdirs):
        files = _image_files(folder)
        paths += files
        rows += [c] * len(files)
    labels = np.zeros((len(paths), len(concepts)), np.float32)
    labels[np.arange(len(paths)), rows] = 1.0
    return LabelledImages(f"folder:{root}", paths, concepts, labels, np.ones_like(labels))


@register_reader("csv")
def read_csv(path: Path, split: str) -> LabelledImages:
    """``path,concept…`` rows with 1 / 0 / empty cells (the split is not used)."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise DatasetError(f"cannot read CSV data set {path}: {exc}") from exc
    if not rows or len(rows[0]) < 2 or rows[0][0].strip().lower() != "path":
        raise DatasetError(f"{path}: the header must be 'path,concept1,…'")
    concepts = [c.strip().lower() for c in rows[0][1:]]
    body = [r for r in rows[1:] if r and r[0].strip()]
    labels = np.zeros((len(body), len(concepts)), np.float32)
    mask = np.zeros_like(labels)
    for i, row in enumerate(body):
        for c, cell in enumerate(row[1:len(concepts) + 1]):
            cell = cell.strip()
            if cell not in ("", "0", "1"):
                raise DatasetError(f"{path} line {i + 2}: label {cell!r} must be 1, 0 or empty")
            if cell:
                labels[i, c], mask[i, c] = float(cell), 1.0
    paths = [Path(r[0].strip()) if Path(r[0].strip()).is_absolute() else path.parent / r[0].strip() for r in body]
    return LabelledImages(f"csv:{path}", paths, concepts, labels, mask)

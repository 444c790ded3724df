"""Data set spec readers on generated layouts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from vidconcept.data import merge, open_dataset, open_datasets
from vidconcept.testing.photos import write_folder_set, write_voc_set
from vidconcept.errors import DatasetError

SOURCES = {"coffee": skimage.data.coffee(), "cat": skimage.data.chelsea(), "rocket": skimage.data.rocket()}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_voc_labels_and_difficult_unknown(tmp_path):
    spec = write_voc_set(tmp_path / "voc", SOURCES, split="val", per_concept=3, difficult_every=4)
    data = open_dataset(spec, "val")
    assert data.concepts == ["cat", "coffee", "rocket"] and len(data) == 9
    rows = {p.stem: i for i, p in enumerate(data.paths)}
    main = tmp_path / "voc" / "ImageSets" / "Main"
    for line in (main / "coffee_val.txt").read_text().splitlines():
        image_id, value = line.split()
        i, c = rows[image_id], data.concepts.index("coffee")
        assert data.mask[i, c] == (value != "0") and (value != "1" or data.labels[i, c] == 1)
    assert (data.mask == 0).sum() > 0
    assert data.load_image(0).mode == "RGB"


def test_voc_missing_split(tmp_path):
    spec = write_voc_set(tmp_path / "voc", SOURCES, split="train", per_concept=1)
    with pytest.raises(DatasetError, match="val.txt"):
        open_dataset(spec, "val")


def test_folder_with_splits(tmp_path):
    spec = write_folder_set(tmp_path / "f", SOURCES, per_concept=2, size=48, splits=("train", "test"))
    data = open_dataset(spec, "test")
    assert len(data) == 6 and data.mask.all()
    np.testing.assert_array_equal(data.labels.sum(1), 1)
    assert all("test" in p.parts for p in data.paths)
    with pytest.raises(DatasetError, match="'val'"):
        open_dataset(spec, "val")


def test_folder_lowercases_and_converts_grey(tmp_path):
    folder = tmp_path / "g" / "Camera"
    folder.mkdir(parents=True)
    Image.fromarray(skimage.data.camera()[:64, :64]).save(folder / "a.png")
    data = open_dataset(f"folder:{tmp_path / 'g'}")
    assert data.concepts == ["camera"] and data.load_image(0).mode == "RGB"


def test_csv_with_unknowns(tmp_path):
    write_folder_set(tmp_path / "img", SOURCES, per_concept=1, size=32)
    (tmp_path / "labels.csv").write_text("path,Coffee,cat\nimg/coffee/0.jpg,1,\nimg/cat/0.jpg,0,1\n")
    data = open_dataset(f"csv:{tmp_path / 'labels.csv'}")
    assert data.concepts == ["coffee", "cat"]
    np.testing.assert_array_equal(data.mask, [[1, 0], [1, 1]])
    np.testing.assert_array_equal(data.labels, [[1, 0], [0, 1]])
    assert data.load_image(1).size == (32, 32)


def test_merge_takes_the_union_with_unknowns(tmp_path):
    a = open_dataset(write_folder_set(tmp_path / "a", {"coffee": SOURCES["coffee"], "cat": SOURCES["cat"]}, 1, 32))
    b = open_dataset(write_folder_set(tmp_path / "b", {"cat": SOURCES["cat"], "rocket": SOURCES["rocket"]}, 1, 32))
    data = merge([a, b])
    assert data.concepts == ["cat", "coffee", "rocket"] and len(data) == 4
    np.testing.assert_array_equal(data.mask[:2], [[1, 1, 0], [1, 1, 0]])  # a does not annotate rocket
    np.testing.assert_array_equal(data.mask[2:], [[1, 0, 1], [1, 0, 1]])


@pytest.mark.parametrize("spec, match", [
    ("nocolon", "KIND:PATH"),
    ("vco:/tmp", "did you mean 'voc'"),
    ("folder:/does/not/exist", "does not exist"),
    ("voc:/does/not/exist", "does not exist"),
    ("csv:/does/not/exist.csv", "cannot read"),
], ids=lambda v: str(v))
def test_bad_specs(spec, match):
    with pytest.raises(DatasetError, match=match):
        open_dataset(spec)


def test_bad_csv_cell(tmp_path):
    (tmp_path / "l.csv").write_text("path,a\nx.jpg,yes\n")
    with pytest.raises(DatasetError, match="line 2"):
        open_dataset(f"csv:{tmp_path / 'l.csv'}")


def test_unreadable_image_is_named(tmp_path):
    folder = tmp_path / "s" / "junk"
    folder.mkdir(parents=True)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    data = open_dataset(f"folder:{tmp_path / 's'}")
    with pytest.raises(DatasetError, match="broken.jpg"):
        data.load_image(0)


def test_no_specs():
    with pytest.raises(DatasetError, match="no data set"):
        open_datasets([])


@pytest.mark.shared
@pytest.mark.skipif(not (SHARED / "voc2007").is_dir(), reason="needs ../shared/data")
def test_shared_concept_pool():
    specs = [f"voc:{SHARED / 'voc2007'}", f"folder:{SHARED / 'intel_scenes'}", f"folder:{SHARED / 'scene15'}"]
    data = open_datasets(specs, "train")
    # every photo of every set, over the union of their names (a name in two sets is one concept)
    assert len(data) == sum(len(open_dataset(s, "train")) for s in specs) and len(data.concepts) == 38
    assert {"forest", "mountain", "street", "person"} <= set(data.concepts)

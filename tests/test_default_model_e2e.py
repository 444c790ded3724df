"""End to end with the model users get: ``models/default`` (FT3-ex1, fused LR detectors).

The other ingest and search tests pin the ImageNet bundle (conftest); this one runs the shipped default
through ingest → search → similar → a user concept → export, on the sample videos, and checks the
answers against what their JSON says each shot shows (the Chelsea cat is in two of them).
"""
from __future__ import annotations

import csv
import io
import json

import pytest

from conftest import ROOT, SAMPLE_VIDEOS
from vidconcept import Index
from vidconcept.cli import main
from vidconcept.concepts import add_concept
from vidconcept.export import export_csv, export_edl
from vidconcept.model.bundle import read_config

MODEL = ROOT / "models" / "default"
VIDEOS = sorted(SAMPLE_VIDEOS.glob("*.mp4"))


def _truth() -> dict[str, dict]:
    return {p.name: json.loads(p.with_suffix(".json").read_text()) for p in VIDEOS}


def _shows(hit, label: str) -> bool:
    """Whether a result shot lies mostly inside the true shot ``label`` of its video."""
    truth = _truth()[hit.video.rsplit("/", 1)[-1]]
    if label not in truth["content_shots"]:
        return False
    start, end = truth["content_shots"][label]
    middle = (hit.start_s + hit.end_s) / 2 * truth["fps"]
    return start <= middle <= end


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    with Index(tmp_path_factory.mktemp("e2e") / "idx", model=MODEL, device="cpu", create=True) as idx:
        idx.summary = idx.ingest(VIDEOS)
        yield idx


def test_ingest_finds_every_content_shot(index):
    data = index.summary.to_dict()
    assert data["videos"] == 3 and not data["failed"]
    assert data["shots"] == sum(len(t["content_shots"]) for t in _truth().values())
    assert index.info()["concepts"] == len(read_config(MODEL).concepts)


def test_search_ranks_the_cat_shots_first(index):
    hits = index.search("cat", top=2)
    assert [_shows(h, "chelsea") for h in hits] == [True, True]
    assert min(h.score for h in hits) > 0.5


def test_boolean_query_excludes(index):
    cats = {h.shot_id for h in index.search("cat", top=2)}
    assert not cats & {h.shot_id for h in index.search("person NOT cat", top=5)}


def test_similar_finds_the_other_cat(index):
    first, second = index.search("cat", top=2)
    hits = index.similar(shot=first.shot_id, top=3)  # the shot itself is left out
    assert hits[0].shot_id == second.shot_id and first.shot_id not in {h.shot_id for h in hits}


def test_user_concept_then_export(index, tmp_path):
    cat = index.search("cat", top=1)[0]
    others = [h.shot_id for h in index.search("cat", top=20) if not _shows(h, "chelsea")]
    concept = add_concept(index, "kitty", [cat.shot_id], others[:3])
    assert concept.to_dict()["scored"] == index.info()["shots"]
    assert _shows(index.search("kitty", top=2)[1], "chelsea")  # the cat it was not shown

    rows = list(csv.DictReader(io.StringIO(export_csv(index, cat.video, concepts=["cat", "kitty"]))))
    assert len(rows) == len(_truth()[cat.video.rsplit("/", 1)[-1]]["content_shots"])
    assert max(rows, key=lambda r: float(r["score:kitty"]))["shot_id"] == str(cat.shot_id)
    assert export_edl(index, query="cat", min_score=0.5).count("FROM CLIP NAME") == 2

    out = tmp_path / "sheet.html"
    assert main(["export", "--index", str(index.root), "--query", "kitty OR cat", "--format", "html",
                 "-o", str(out)]) == 0
    assert out.read_text().count("<img") >= 2

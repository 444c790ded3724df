"""`vidconcept upgrade`: another model version in place; shots, ids and labels kept; equal to a fresh ingest."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from vidconcept.api import Index
from vidconcept.concepts import add_concept, get_concept
from vidconcept.errors import UsageError
from vidconcept.testing.releases import detectors_release

NEW = ROOT / "models" / "imagenet-lite0"


@pytest.fixture(scope="module")
def old_bundle(tmp_path_factory) -> Path:
    """Another version of the ImageNet bundle: other preprocessing and one concept renamed
    (so the upgrade adds one concept and drops one)."""
    bundle = shutil.copytree(NEW, tmp_path_factory.mktemp("models") / "old")
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["data_config"]["input_size"] = [3, 192, 192]
    cfg["concepts"][-1] = "old_only"
    (bundle / "config.json").write_text(json.dumps(cfg))
    return bundle


@pytest.fixture(scope="module")
def fresh(photo_videos, tmp_path_factory) -> dict:
    """The photo videos ingested with the new model: what an upgrade must equal."""
    root = tmp_path_factory.mktemp("fresh") / "idx"
    with Index(root, create=True, model=NEW) as idx:
        idx.ingest([photo_videos])
        return snapshot(idx)


def snapshot(idx: Index) -> dict:
    db = idx.store.db
    shots = {r["id"]: (Path(r["path"]).name, r["idx"], r["start_frame"], r["end_frame"]) for r in db.query(
        "SELECT s.id, v.path, s.idx, s.start_frame, s.end_frame FROM shots s JOIN videos v ON v.id = s.video_id")}
    scores = {}
    for r in db.query("SELECT sc.shot_id, c.name, sc.score FROM scores sc JOIN concepts c ON c.id = sc.concept_id "
                      "WHERE c.source = 'model'"):
        scores[(shots[r["shot_id"]], r["name"])] = r["score"]
    ids, feats = idx.store.features_of(list(shots))
    return {"shots": shots, "scores": scores, "features": {shots[i]: f for i, f in zip(ids.tolist(), feats)},
            "concepts": {c["name"] for c in idx.store.concepts() if c["source"] == "model"}}


def assert_equal_to_fresh(got: dict, want: dict) -> None:
    assert sorted(got["shots"].values()) == sorted(want["shots"].values())  # same shots
    assert got["concepts"] == want["concepts"]
    keys = set(got["scores"]) | set(want["scores"])
    diff = max(abs(got["scores"].get(k, 0.0) - want["scores"].get(k, 0.0)) for k in keys)
    assert diff < 1e-3, diff  # same keyframe pixels: equal up to fp16/batching rounding
    for shot, f in want["features"].items():
        assert np.abs(got["features"][shot] - f).max() < 2e-3


@pytest.fixture
def old_index(photo_videos, old_bundle, tmp_path) -> Path:
    root = tmp_path / "idx"
    with Index(root, create=True, model=old_bundle) as idx:
        idx.ingest([photo_videos])
        shots = {r["keyframe"]: r["id"] for r in idx.store.db.query("SELECT id, keyframe FROM shots")}
        ids = sorted(shots.values())
        add_concept(idx, "mug", positive=ids[:1], negative=ids[1:2])
    return root


def test_upgrade_keeps_shots_ids_labels_and_equals_a_fresh_ingest(old_index, fresh, photo_videos):
    with Index(old_index, model=NEW) as idx:
        before = {r["id"]: (r["video_id"], r["idx"], r["start_frame"], r["end_frame"])
                  for r in idx.store.db.query("SELECT * FROM shots")}
        labels = get_concept(idx, "mug").info
        assert idx.info()["upgrade_available"]["model"] == "imagenet-lite0"
        extra = shutil.copy(next(photo_videos.glob("*.mp4")), old_index.parent / "new.mp4")
        with pytest.raises(UsageError, match="vidconcept upgrade"):
            idx.ingest([extra])  # another version: an error naming upgrade
        summary = idx.upgrade().to_dict()
        assert summary["shots"] == len(before) and summary["from_keyframes"] == len(before)  # no video opened
        assert summary["concepts_added"] == [fresh_last_concept()] and summary["concepts_dropped"] == ["old_only"]
        assert summary["user_concepts"] == ["mug"] and summary["failed"] == []
        after = {r["id"]: (r["video_id"], r["idx"], r["start_frame"], r["end_frame"])
                 for r in idx.store.db.query("SELECT * FROM shots")}
        assert after == before  # same ids, same boundaries
        concept = get_concept(idx, "mug")
        assert (concept.positive, concept.negative) == (labels["positive"], labels["negative"])
        assert concept.info["model"]["bundle_sha1"] == idx.info()["model"]["bundle_sha1"] != labels["model"]["bundle_sha1"]
        assert len(idx.search("mug", top=50)) == len(before)  # retrained on the new features, every shot scored
        with pytest.raises(UsageError, match="dropped when this index was upgraded"):
            idx.search("old_only")
        info = idx.info()
        assert info["upgrade_pending"] is None and info["upgrade_available"] is None
        assert idx.vectors().ntotal == len(before)
        assert_equal_to_fresh(snapshot(idx), fresh)
        assert_columns_match_sqlite(idx.store)
        assert idx.upgrade().up_to_date  # a second run has nothing to do


def assert_columns_match_sqlite(store) -> None:
    """The column store search reads holds the upgraded scores (issue 23)."""
    from vidconcept.index import columns

    cs = columns.read(store.root)
    assert cs is not None and columns.fresh(store, cs) and cs.digest == store.shot_digest()
    assert set(cs.files) == set(store.concept_ids().values())
    for cid in cs.files:
        np.testing.assert_array_equal(cs.codes(cid), columns.encode(columns.scatter(cs.ids, *store.concept_column(cid))))


def fresh_last_concept() -> str:
    return json.loads((NEW / "config.json").read_text())["concepts"][-1]


KILLER = """
import os, signal, sys
from vidconcept.api import Index
from vidconcept.index.lock import write_lock
from vidconcept.upgrade import Upgrader
idx = Index(sys.argv[1], model=sys.argv[2])
with write_lock(idx.root):
    Upgrader(idx.store, idx.model, after_video=lambda v: os.kill(os.getpid(), signal.SIGKILL)).run()
"""


def test_kill_9_mid_upgrade_then_rerun(old_index, fresh):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(old_index), str(NEW)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    with Index(old_index, model=NEW) as idx:
        pending = idx.info()["upgrade_pending"]
        assert pending["to"] == "imagenet-lite0" and pending["videos_done"] == 1 and pending["videos"] == 2
        assert len(idx.search("mug", top=5)) == 5 and "old_only" in idx.store.concept_ids()  # usable: old scores
        with pytest.raises(UsageError, match="has not finished"):
            idx.ingest([old_index.parent / "nothing.mp4"])  # refused before any file is looked at
        summary = idx.upgrade().to_dict()
        assert summary["resumed"] == 1 and summary["videos"] == 1
        assert_equal_to_fresh(snapshot(idx), fresh)
        assert_columns_match_sqlite(idx.store)
        assert idx.info()["upgrade_pending"] is None
        version = idx.info()["model_version"]
    cli = [sys.executable, "-m", "vidconcept"]
    out = subprocess.run(cli + ["upgrade", "--index", str(old_index), "--model", str(NEW), "--json"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and json.loads(out.stdout)["up_to_date"] is True, out.stderr
    out = subprocess.run(cli + ["info", "--index", str(old_index), "--json"], env={**env, "VIDCONCEPT_MODEL": str(NEW)},
                         capture_output=True, text=True, timeout=300)
    assert json.loads(out.stdout)["model_version"] == version


def test_small_keyframes_are_read_again_from_the_video(old_index, fresh):
    """Keyframes stored smaller than ingest stores them today (an older index): the frame at the
    recorded keyframe time is read by seeking, stored at today's size, and scores as a fresh ingest."""
    from PIL import Image

    for jpg in (old_index / "keyframes").rglob("*.jpg"):
        with Image.open(jpg) as im:
            im.resize((im.width // 2, im.height // 2)).save(jpg, quality=80)
    with Index(old_index, model=NEW) as idx:
        summary = idx.upgrade().to_dict()
        assert summary["from_video"] == summary["shots"] > 0 and summary["from_keyframes"] == 0
        assert_equal_to_fresh(snapshot(idx), fresh)
    sizes = {Image.open(j).size for j in (old_index / "keyframes").rglob("*.jpg")}
    assert sizes == {(320, 240)}


DEFAULT = ROOT / "models" / "default"


@pytest.fixture(scope="module")
def default_pair(photo_videos, tmp_path_factory) -> dict:
    """The photo videos ingested with the shipped model, and fresh with a detectors release of it."""
    base = tmp_path_factory.mktemp("same-backbone")
    new = detectors_release(DEFAULT, base / "v2")
    with Index(base / "fresh", create=True, model=new) as idx:
        idx.ingest([photo_videos])
        fresh_v2 = snapshot(idx)
    with Index(base / "old", create=True, model=DEFAULT) as idx:
        idx.ingest([photo_videos])
    return {"new": new, "fresh": fresh_v2, "old": base / "old"}


def test_same_backbone_upgrade_reads_no_frame(default_pair, tmp_path):
    """A version that keeps the backbone (new detectors, calibration or concept layer) reruns only
    the layers above the stored features: no keyframe or video is read, and the scores equal a
    fresh ingest up to the features' float16 rounding."""
    root = shutil.copytree(default_pair["old"], tmp_path / "idx")
    shutil.rmtree(root / "keyframes")  # proof that no image is needed
    with Index(root, model=default_pair["new"]) as idx:
        ids = sorted(r["id"] for r in idx.store.db.query("SELECT id FROM shots"))
        add_concept(idx, "mine", positive=ids[:1], negative=ids[1:3])
        summary = idx.upgrade().to_dict()
        assert summary["from_features"] == summary["shots"] == len(ids) > 0
        assert summary["from_keyframes"] == summary["from_video"] == 0 and summary["failed"] == []
        assert summary["user_concepts"] == ["mine"]
        assert_equal_to_fresh(snapshot(idx), default_pair["fresh"])
        assert_columns_match_sqlite(idx.store)
        assert idx.info()["upgrade_available"] is None


def test_features_without_norms_take_the_frames(default_pair, tmp_path):
    """Shots indexed before feature norms were kept (schema 2) are rescored from their keyframes."""
    root = shutil.copytree(default_pair["old"], tmp_path / "idx")
    with Index(root, model=default_pair["new"]) as idx:
        idx.store.db.execute("UPDATE features SET norm = NULL")
        idx.store.db.conn.commit()
        summary = idx.upgrade().to_dict()
        assert summary["from_keyframes"] == summary["shots"] > 0 and summary["from_features"] == 0
        assert_equal_to_fresh(snapshot(idx), default_pair["fresh"])


def test_a_dropped_name_the_new_model_keeps_as_an_alias_still_searches(old_index, tmp_path):
    """A release that merges a concept into another keeps the old name as an alias: after the upgrade a
    saved query with the old name finds the concept it was merged into, not an error."""
    merged = shutil.copytree(NEW, tmp_path / "merged")
    cfg = json.loads((merged / "config.json").read_text())
    cfg["aliases"] = {"old_only": fresh_last_concept()}
    (merged / "config.json").write_text(json.dumps(cfg))
    with Index(old_index, model=merged) as idx:
        assert idx.upgrade().to_dict()["concepts_dropped"] == ["old_only"]
        assert idx.store.get_meta("aliases") == {"old_only": fresh_last_concept()}
        by_alias = [(h.shot_id, h.score) for h in idx.search("old_only", top=5)]
        assert by_alias == [(h.shot_id, h.score) for h in idx.search(fresh_last_concept(), top=5)]
        listed = {c["name"]: c["aliases"] for c in idx.concepts()}
        assert listed[fresh_last_concept()] == ["old_only"]

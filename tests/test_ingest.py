"""End-to-end: ingest real (generated) videos with the real default model, then search."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from conftest import folder_of, write_video
from vidconcept.api import Index

@pytest.fixture(scope="module")
def videos(photo_videos) -> Path:
    return photo_videos


@pytest.fixture(scope="module")
def index(videos, tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    idx = Index(root, create=True)
    summary = idx.ingest([videos])
    yield idx, summary
    idx.close()


def test_ingest_summary(index):
    idx, summary = index
    data = summary.to_dict()
    assert data["videos"] == 2 and data["shots"] == 5 and not data["failed"]
    assert data["video_seconds"] == pytest.approx(6.0, abs=0.2)
    assert idx.info()["shots"] == 5


def test_info_says_how_the_model_ran(index):
    """The precision and fusion the ingest's model chose for this CPU, and why (the ImageNet bundle asks for fp32)."""
    idx, _ = index
    runtime = idx.info()["runtime"]
    assert runtime == idx.model.runtime
    assert runtime["precision"] == "fp32" and runtime["why"] == "the bundle asks for fp32" and runtime["fusion"]


def test_keyframes_written(index):
    idx, _ = index
    rows = list(idx.store.db.query("SELECT keyframe FROM shots"))
    for r in rows:
        from PIL import Image

        with Image.open(idx.root / r["keyframe"]) as im:
            assert max(im.size) == 320


def test_search_finds_the_espresso_shots(index):
    idx, _ = index
    res = idx.search("espresso", top=3)
    assert res.total >= 2
    top2 = {(Path(r.video).name, r.shot_index) for r in res[:2]}
    assert top2 == {("a.mp4", 0), ("b.mp4", 1)}
    assert res[0].score > 0.5 and "espresso" in res[0].concepts


def test_boolean_search(index):
    idx, _ = index
    res = idx.search("(tabby OR tiger_cat OR egyptian_cat) NOT espresso", top=1)
    assert (Path(res[0].video).name, res[0].shot_index) == ("a.mp4", 1)


def test_similar_shot_finds_the_other_espresso(index):
    idx, _ = index
    first = idx.search("espresso", top=1)[0]
    sim = idx.similar(shot=first.shot_id, top=1)
    assert "espresso" in sim[0].concepts and sim[0].shot_id != first.shot_id


def test_similar_image(index):
    idx, _ = index
    sim = idx.similar(image=skimage.data.chelsea(), top=1)
    assert (Path(sim[0].video).name, sim[0].shot_index) == ("a.mp4", 1)


def test_reingest_is_idempotent_and_changed_file_reindexed(videos, tmp_path):
    work = tmp_path / "v"
    shutil.copytree(videos, work)
    idx = Index(tmp_path / "idx", create=True)
    idx.ingest([work])
    before = list(idx.store.db.query("SELECT id, video_id, idx, start_frame FROM shots ORDER BY id"))
    again = idx.ingest([work]).to_dict()
    assert again["videos"] == 0 and again["unchanged"] == 2
    assert list(idx.store.db.query("SELECT id, video_id, idx, start_frame FROM shots ORDER BY id")) == before
    write_video(work / "a.mp4", [skimage.data.rocket()])  # the file changes: one shot now
    changed = idx.ingest([work]).to_dict()
    assert changed["videos"] == 1 and idx.info()["shots"] == 4
    assert idx.vectors().ntotal == 4
    idx.close()


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.mp4", b"", "empty"),
        ("random.mp4", os.urandom(5000), "cannot open"),
        ("text.mp4", b"hello, not a video\n" * 20, "cannot open"),
    ],
    ids=["zero-bytes", "random-bytes", "text"],
)
def test_bad_files_fail_cleanly_and_others_are_ingested(videos, tmp_path, name, content, reason):
    work = folder_of(tmp_path / "v", {"good.mp4": videos / "a.mp4"})
    (work / name).write_bytes(content)
    proc = _cli("ingest", str(work), str(tmp_path / "missing.mp4"), "--index", str(tmp_path / "idx"), "--json", "-q")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["videos"] == 1
    failed = {Path(f["path"]).name: f["reason"] for f in data["failed"]}
    assert set(failed) == {name, "missing.mp4"}
    assert reason in failed[name].lower() or reason == "cannot open" and "video" in failed[name]
    assert "Traceback" not in proc.stderr
    assert sum(name in line for line in proc.stderr.splitlines()) == 1


@pytest.mark.logs_errors  # the truncated file's one-line failure
def test_truncated_file_does_not_lose_indexed_data(videos, tmp_path):
    work = folder_of(tmp_path / "v", {"b.mp4": videos / "b.mp4"})
    idx = Index(tmp_path / "idx", create=True)
    idx.ingest([work])
    shots = idx.info()["shots"]
    data = (work / "b.mp4").read_bytes()
    (work / "b.mp4").write_bytes(data[: len(data) // 3])
    idx.ingest([work])
    assert idx.info()["shots"] >= 1  # partial decode keeps what could be read, or the old index stays
    assert idx.info()["videos"] == 1
    idx.close()
    assert shots == 3


def test_unwritable_index_folder_is_a_clear_error(videos, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/vidconcept-index"  # not writable even for root
    else:
        target = str(tmp_path / "ro")
        os.mkdir(target, 0o500)
    proc = _cli("ingest", str(videos), "--index", target, "-q")
    assert proc.returncode != 0 and "cannot" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_search_json_and_unknown_concept(index):
    idx, _ = index
    proc = _cli("search", "espresso", "--index", str(idx.root), "--top", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    r = data["results"][0]
    assert {"video", "shot_id", "shot_index", "start_s", "end_s", "score", "keyframe", "concepts"} <= set(r)
    proc = _cli("search", "espreso", "--index", str(idx.root))
    assert proc.returncode == 1 and "did you mean 'espresso'" in proc.stderr
    proc = _cli("info", "--index", str(idx.root), "--json")
    assert json.loads(proc.stdout)["videos"] == 2
    proc = _cli("similar", "--shot", str(r["shot_id"]), "--index", str(idx.root), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["results"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidconcept", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("workers", [2], ids=["process-pool"])
def test_engines_agree(photo_videos, index, tmp_path, workers):
    """Contract: the process-pool path gives the same index as the threaded one."""
    from conftest import snapshot

    idx, _ = index
    with Index(tmp_path / "idx", create=True) as other:
        other.ingest([photo_videos], workers=workers)
    a, b = snapshot(idx.root), snapshot(tmp_path / "idx")
    assert a["shots"] == b["shots"] and a["videos"] == b["videos"]
    assert a["scores"].keys() == b["scores"].keys()
    np.testing.assert_allclose([b["scores"][k] for k in a["scores"]], list(a["scores"].values()), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_script_without_main_guard_ingests(tmp_path, workers):
    """Decoder processes must not re-run the calling script (spawn imports ``__main__``)."""
    script = tmp_path / "nightly.py"
    script.write_text("import sys\nfrom vidconcept.api import Index\nprint('top-level ran', file=sys.stderr)\n"
                      "with Index(sys.argv[2], create=True) as index:\n"
                      f"    print(index.ingest(sys.argv[1], workers={workers}).to_dict()['shots'])\n")
    videos = Path(__file__).resolve().parent.parent / "sample_videos"
    proc = subprocess.run([sys.executable, str(script), str(videos), str(tmp_path / "idx")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "12" and proc.stderr.count("top-level ran") == 1


def test_another_version_of_the_model_is_refused_and_names_upgrade(videos, tmp_path, caplog):
    """Same name and concepts, other preprocessing (a retrained default): ingest refuses (scores of
    two versions would mix), says to run `vidconcept upgrade`, and keeps the data; after it, ingest goes on."""
    from vidconcept.config import resolve_model_dir
    from vidconcept.errors import UsageError

    bundle = shutil.copytree(resolve_model_dir(None), tmp_path / "model")
    work = folder_of(tmp_path / "v", {"first.mp4": sorted(videos.glob("*.mp4"))[0]})
    with Index(tmp_path / "idx", create=True, model=bundle) as idx:
        idx.ingest([work])
        recorded = idx.info()["model"]["bundle_sha1"]
        assert idx.ingest([work]).to_dict()["unchanged"] == 1  # the same version again: fine
    shutil.copy(sorted(videos.glob("*.mp4"))[1], work / "second.mp4")
    config = json.loads((bundle / "config.json").read_text())
    config["data_config"]["crop_mode"] = "none"
    (bundle / "config.json").write_text(json.dumps(config))
    with Index(tmp_path / "idx", model=bundle) as idx:
        with pytest.raises(UsageError, match="vidconcept upgrade --index"):
            idx.ingest([work])
        assert idx.info()["videos"] == 1 and idx.info()["model"]["bundle_sha1"] == recorded  # nothing lost
        assert idx.info()["upgrade_available"]["version"] != recorded
        idx.upgrade()
        assert idx.ingest([work]).to_dict()["videos"] == 1 and idx.info()["videos"] == 2
        assert idx.info()["model"]["bundle_sha1"] != recorded

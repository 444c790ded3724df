"""Shared fixtures: a populated index built without decoding video, and data paths."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from vidconcept.index.store import ShotData, Store

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SAMPLE_VIDEOS = ROOT / "sample_videos"

# Tests assert ImageNet concepts (espresso, tabby, …): pin the ImageNet bundle, so
# models/default can become a fine-tuned model without touching them. Subprocesses
# (CLI tests) inherit it.
os.environ["VIDCONCEPT_MODEL"] = str(ROOT / "models" / "imagenet-lite0")


def pytest_collection_modifyitems(config, items):
    if not (SHARED / "data").exists():
        skip = pytest.mark.skip(reason="../shared is not present")
        for item in items:
            if "shared" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def no_unexpected_errors(request, caplog):
    """Fail a test that logs an ERROR it did not expect (PySceneDetect's ``tests/conftest.py`` guard):
    a swallowed failure would otherwise pass unseen. Tests that check an error is logged say so with
    ``@pytest.mark.logs_errors``."""
    yield
    if request.node.get_closest_marker("logs_errors"):
        return
    errors = [f"{r.name}: {r.getMessage()}" for phase in ("setup", "call")
              for r in caplog.get_records(phase) if r.levelno >= logging.ERROR]
    assert not errors, f"unexpected ERROR log records (mark the test logs_errors if they are expected): {errors}"


CONCEPTS = ["cat", "dog", "grass", "night", "person"]


def fill_store(store: Store, n_videos: int = 3, shots_per_video: int = 4, seed: int = 0,
               only=None, decimals: int | None = None) -> np.ndarray:
    """Write synthetic videos with random scores and features; return the score matrix.

    ``only(v)``: write only the videos it accepts, each with the data it has when all are written
    (the shards of one archive); ``decimals``: round the scores (equal scores, to test ties)."""
    rng = np.random.default_rng(seed)
    cids = store.ensure_concepts(CONCEPTS)
    store.set_meta("feature_dim", 8)
    all_scores = []
    for v in range(n_videos):
        shots = [ShotData(i, i * 25, (i + 1) * 25, i * 1.0, i + 1.0, f"keyframes/v{v}/{i:05d}.jpg")
                 for i in range(shots_per_video)]
        scores = rng.random((shots_per_video, len(CONCEPTS))).astype(np.float32)
        if decimals is not None:
            scores = scores.round(decimals)
        feats = rng.normal(size=(shots_per_video, 8)).astype(np.float32)
        if only is not None and not only(v):
            continue
        video = {"path": f"/videos/v{v}.mp4", "content_hash": f"h{v}", "size": 1, "mtime": 1.0,
                 "duration_s": float(shots_per_video), "fps": 25.0, "frames": 25 * shots_per_video,
                 "width": 64, "height": 48, "model": "fake"}
        store.replace_video(video, shots, scores, [cids[c] for c in CONCEPTS], feats)
        all_scores.append(scores)
    return np.concatenate(all_scores) if all_scores else np.empty((0, len(CONCEPTS)), np.float32)


def write_keyframes(store: Store, colour: tuple[int, int, int]) -> None:
    """A small JPEG of one colour at every shot's keyframe path (what the web routes serve)."""
    from PIL import Image

    for row in store.db.query("SELECT keyframe FROM shots"):
        path = store.root / row["keyframe"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 18), colour).save(path)


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store.open(tmp_path / "index")
    yield s
    s.close()


@pytest.fixture
def filled(store) -> tuple[Store, np.ndarray]:
    return store, fill_store(store)


FPS = 25


def write_video(path: Path, images: list[np.ndarray], seconds_each: float = 1.2, size=(320, 240)) -> list[int]:
    """Hard cuts between slowly panning still photos; returns the first frame of each shot."""
    w, h = size
    starts, frame_no = [], 0
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"x264-params": "mbtree=0"}  # the same stream at every encode (see testing.videos)
        for img in images:
            starts.append(frame_no)
            n = int(seconds_each * FPS)
            for k in range(n):
                x0 = int(k * (img.shape[1] - w) / max(n - 1, 1)) if img.shape[1] > w else 0
                crop = np.ascontiguousarray(_fit(img, w, h)[:, :, :3]) if img.shape[1] <= w else img[:h, x0 : x0 + w]
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_fit(crop, w, h)), format="rgb24")
                out.mux(stream.encode(frame))
                frame_no += 1
        out.mux(stream.encode())
    return starts


def folder_of(folder: Path, copies: dict[str, Path]) -> Path:
    """``folder``, created, holding a copy of each source file under its new name: a folder a test ingests."""
    folder.mkdir(parents=True)
    for name, source in copies.items():
        shutil.copy(source, folder / name)
    return folder


def _fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return cv2.resize(img[:, :, :3], (w, h), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="session")
def photo_videos(tmp_path_factory) -> Path:
    """Two small real-photo videos with hard cuts: a.mp4 (coffee | cat), b.mp4 (astronaut | coffee | rocket)."""
    import skimage.data

    d = tmp_path_factory.mktemp("videos")
    write_video(d / "a.mp4", [skimage.data.coffee(), skimage.data.chelsea()])
    write_video(d / "b.mp4", [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.rocket()])
    return d


def snapshot(root: Path) -> dict:
    """Everything a clean run determines, independent of row ids (for comparing runs and engines)."""
    from vidconcept.api import Index

    with Index(root) as idx:
        db = idx.store.db
        shots = sorted(
            (Path(r["path"]).name, r["idx"], r["start_frame"], r["end_frame"])
            for r in db.query("SELECT v.path, s.idx, s.start_frame, s.end_frame FROM shots s JOIN videos v ON v.id = s.video_id")
        )
        scores = {
            (Path(r["path"]).name, r["idx"], r["name"]): r["score"]
            for r in db.query(
                "SELECT v.path, s.idx, c.name, sc.score FROM scores sc JOIN shots s ON s.id = sc.shot_id "
                "JOIN videos v ON v.id = s.video_id JOIN concepts c ON c.id = sc.concept_id")
        }
        dupes = db.execute("SELECT count(*) FROM (SELECT video_id, idx FROM shots GROUP BY 1, 2 HAVING count(*) > 1)").fetchone()[0]
        return {"videos": idx.info()["videos"], "shots": shots, "scores": scores, "dupes": dupes,
                "vectors": idx.vectors().ntotal, "features": idx.store.feature_digest()["count"]}

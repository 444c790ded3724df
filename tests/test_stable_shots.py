"""A changed file ingested again: unchanged shots keep their ids, labels follow shots, nothing is lost silently."""
from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import FPS, _fit
from vidconcept.api import Index
from vidconcept.concepts import add_concept, get_concept
from vidconcept.index.shot_match import follow, match_shots
from vidconcept.index.store import ShotData


def write_clip(path: Path, parts: list[tuple[np.ndarray, float]], size=(320, 240)) -> None:
    """Hard cuts between still photos held for the given seconds (a slow zoom keeps the encoder honest)."""
    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for img, seconds in parts:
            base = _fit(img, w + 40, h + 30)
            n = int(round(seconds * FPS))
            for k in range(n):
                x0, y0 = k * 40 // max(n, 1), k * 30 // max(n, 1)
                frame = np.ascontiguousarray(base[y0 : y0 + h, x0 : x0 + w])
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 10))  # a new mtime even within one second


def test_match_shots_keeps_ids_within_two_frames():
    old = [{"id": 5, "start_frame": 0, "end_frame": 30}, {"id": 6, "start_frame": 30, "end_frame": 60},
           {"id": 7, "start_frame": 60, "end_frame": 90}]
    new = [ShotData(0, 1, 31, 0, 0, None), ShotData(1, 31, 75, 0, 0, None), ShotData(2, 75, 92, 0, 0, None)]
    assert match_shots(old, new) == {0: 5}
    new = [ShotData(0, 0, 30, 0, 0, None), ShotData(1, 32, 58, 0, 0, None), ShotData(2, 58, 90, 0, 0, None)]
    assert match_shots(old, new) == {0: 5, 1: 6, 2: 7}


def test_follow_by_time_overlap():
    spans = {31: (0.0, 1.2), 32: (1.2, 3.6), 33: (3.6, 5.0)}
    assert follow({6: (1.2, 2.4)}, spans) == {6: 32}  # inside a longer shot
    assert follow({8: (5.0, 6.0)}, spans) == {8: None}  # nothing there any more
    assert follow({9: (0.0, 3.0)}, spans) == {9: 32}  # split: the larger part


@pytest.fixture(scope="module")
def photos():
    import skimage.data

    return {"coffee": skimage.data.coffee(), "cat": skimage.data.chelsea(), "astronaut": skimage.data.astronaut(),
            "rocket": skimage.data.rocket()}


def _shots(idx: Index, video: Path) -> list[dict]:
    return list(idx.store.db.query(
        "SELECT s.id, s.idx, s.start_frame, s.end_frame FROM shots s JOIN videos v ON v.id = s.video_id "
        "WHERE v.path = ? ORDER BY s.idx", [str(video.resolve())]))


def test_changed_file_keeps_matching_shot_ids_and_labels(tmp_path, photos):
    videos = tmp_path / "videos"
    videos.mkdir()
    a, b = videos / "a.mp4", videos / "b.mp4"
    write_clip(a, [(photos["coffee"], 1.2), (photos["cat"], 1.2)])
    write_clip(b, [(photos["astronaut"], 1.2), (photos["rocket"], 1.2)])
    with Index(tmp_path / "idx", create=True) as idx:
        idx.ingest([videos])
        first = _shots(idx, a)
        assert [(s["start_frame"], s["end_frame"]) for s in first] == [(0, 30), (30, 60)]
        coffee, cat = first[0]["id"], first[1]["id"]
        add_concept(idx, "mug", positive=[coffee], negative=[cat])

        # The file changes: the cat shot runs longer and a third shot follows.
        write_clip(a, [(photos["coffee"], 1.2), (photos["cat"], 2.4), (photos["astronaut"], 1.2)])
        summary = idx.ingest([videos]).to_dict()
        second = _shots(idx, a)
        assert [(s["start_frame"], s["end_frame"]) for s in second] == [(0, 30), (30, 90), (90, 120)]
        assert second[0]["id"] == coffee  # unchanged span, same id
        assert cat not in {s["id"] for s in second}  # its span changed: a new shot
        concept = get_concept(idx, "mug")
        assert concept.positive == [coffee] and concept.negative == [second[1]["id"]]  # the label followed
        assert summary["videos"] == 1 and summary["shots_kept"] == 1
        assert summary["labels_moved"] == 1 and summary["labels_lost"] == []
        assert idx.vectors().ntotal == idx.store.shot_count() == 5
        assert {h.shot_id for h in idx.search("mug", top=10)} == {s["id"] for s in _shots(idx, b) + second}

        # Cut short: nothing covers the cat shot any more: its label is reported and kept, not dropped.
        write_clip(a, [(photos["coffee"], 1.2)])
        summary = idx.ingest([videos]).to_dict()
        third = _shots(idx, a)
        assert [s["id"] for s in third] == [coffee]
        lost = summary["labels_lost"]
        assert len(lost) == 1 and lost[0]["concept"] == "mug" and lost[0]["label"] == "negative"
        assert lost[0]["shot"] == second[1]["id"] and lost[0]["video"] == str(a.resolve())
        concept = get_concept(idx, "mug")
        assert concept.positive == [coffee] and concept.negative == []
        assert concept.to_dict()["lost_labels"][0]["shot"] == second[1]["id"]
        assert idx.store.db.execute("SELECT count(*) FROM scores WHERE shot_id NOT IN (SELECT id FROM shots)").fetchone()[0] == 0
        assert idx.vectors().ntotal == idx.store.shot_count() == 3


def test_keyframe_frame_and_time_are_recorded(tmp_path, photos):
    clip = tmp_path / "c.mp4"
    write_clip(clip, [(photos["coffee"], 1.2), (photos["cat"], 1.2)])
    with Index(tmp_path / "idx", create=True) as idx:
        idx.ingest([clip])
        rows = list(idx.store.db.query("SELECT start_frame, end_frame, keyframe_frame, keyframe_s FROM shots"))
    for r in rows:
        assert r["start_frame"] <= r["keyframe_frame"] < r["end_frame"]
        assert r["keyframe_s"] == pytest.approx(r["keyframe_frame"] / FPS, abs=1e-3)
    assert json.dumps(rows)  # plain values

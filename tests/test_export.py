"""Exports checked by independent readers: csv, json, an EDL line parser, html.parser, trec_eval lines."""
from __future__ import annotations

import base64
import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CONCEPTS, fill_store
from vidconcept import cli
from vidconcept.api import Index
from vidconcept.errors import UnknownNameError, UsageError
from vidconcept.export import FORMATS, export, export_text, render, select
from vidconcept.index.store import ShotData, Store

NTSC = 30000 / 1001


def add_video(store: Store, path: str, fps: float, times: list[tuple[float, float]], seed: int = 1) -> int:
    """A video whose shots start and end at ``times`` (seconds); frames from the average ``fps``."""
    rng = np.random.default_rng(seed)
    shots = [ShotData(i, int(a * fps), int(b * fps), a, b, f"keyframes/{Path(path).stem}/{i:05d}.jpg")
             for i, (a, b) in enumerate(times)]
    cids = store.concept_ids()
    video = {"path": path, "content_hash": path, "size": 1, "mtime": 1.0, "duration_s": times[-1][1],
             "fps": fps, "frames": int(times[-1][1] * fps), "width": 64, "height": 48, "model": "fake"}
    scores = rng.random((len(shots), len(CONCEPTS))).astype(np.float32)
    feats = rng.normal(size=(len(shots), 8)).astype(np.float32)
    return store.replace_video(video, shots, scores, [cids[c] for c in CONCEPTS], feats).video_id


def write_keyframes(index: Index) -> None:
    """Tiny real JPEGs where the store says keyframes are."""
    for (path,) in index.store.db.execute("SELECT keyframe FROM shots"):
        target = index.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6), (200, 30, 30)).save(target, "JPEG")


@pytest.fixture
def index(tmp_path):
    store = Store.open(tmp_path / "index")
    fill_store(store)
    add_video(store, "/videos/ntsc.mov", NTSC, [(0.0, 60.06), (60.06, 600.0), (600.0, 601.0)])
    add_video(store, "/videos/phone.mp4", 27.6, [(0.0, 10.5), (10.5, 12.25)], seed=2)
    store.close()
    with Index(tmp_path / "index") as ix:
        write_keyframes(ix)
        yield ix


def shot_table(index: Index, video_id: int) -> list[dict]:
    return list(index.store.db.query("SELECT * FROM shots WHERE video_id = ? ORDER BY idx", [video_id]))


def video_id(index: Index, name: str) -> int:
    return index.store.db.execute("SELECT id FROM videos WHERE path LIKE ?", [f"%/{name}"]).fetchone()[0]


# ---- independent timecode reader ------------------------------------------------
def tc_frames(tc: str, fps: float) -> int:
    """Frames of a timecode, written separately from vidconcept's (drop-frame: the SMPTE inverse)."""
    h, m, s, f = map(int, re.split("[:;]", tc))
    base = round(fps)
    labels = ((h * 60 + m) * 60 + s) * base + f
    if ";" not in tc:
        return labels
    drop = 2 if base == 30 else 4
    minutes = h * 60 + m
    return labels - drop * (minutes - minutes // 10)


def expected_frame(seconds: float, fps: float) -> int:
    return round(seconds * fps)


# ---- csv / json -----------------------------------------------------------------
def test_csv_one_row_per_shot(index):
    vid = video_id(index, "v1.mp4")
    text = export_text(index, "csv", target="v1.mp4", concepts=["dog", "cat"])
    rows = list(csv.DictReader(io.StringIO(text)))
    shots = shot_table(index, vid)
    assert [int(r["shot_index"]) for r in rows] == [s["idx"] for s in shots]
    for row, shot in zip(rows, shots):
        scores = index.store.shot_scores(shot["id"])
        assert float(row["start_s"]) == shot["start_s"] and float(row["end_s"]) == shot["end_s"]
        assert tc_frames(row["start_tc"], 25) == expected_frame(shot["start_s"], 25)
        assert tc_frames(row["end_tc"], 25) == expected_frame(shot["end_s"], 25)
        assert float(row["score:dog"]) == pytest.approx(scores["dog"], abs=1e-6)
        assert float(row["score:cat"]) == pytest.approx(scores["cat"], abs=1e-6)
        assert Path(row["keyframe"]).read_bytes()[:2] == b"\xff\xd8"
        top = dict(item.split("=") for item in row["top_concepts"].split(";"))
        assert list(top) == list(index.store.top_concepts(shot["id"], 5))


def test_csv_without_shots_still_has_a_header(index):
    text = render(index, [], "csv", concepts=["dog"])
    assert next(csv.reader(io.StringIO(text)))[-2:] == ["score:dog", "top_concepts"]


def test_json_matches_shot_table(index):
    vid = video_id(index, "ntsc.mov")
    doc = json.loads(export_text(index, "json", target=vid, concepts=["night"]))
    shots = shot_table(index, vid)
    assert doc["concepts"] == ["night"] and len(doc["shots"]) == len(shots)
    for rec, shot in zip(doc["shots"], shots):
        assert rec["shot_id"] == shot["id"] and rec["video_id"] == vid
        assert ";" in rec["start_tc"] and rec["fps"] == "29.97 DF"
        assert tc_frames(rec["start_tc"], NTSC) == expected_frame(shot["start_s"], NTSC)
        assert rec["score:night"] == pytest.approx(index.store.shot_scores(shot["id"])["night"], abs=1e-6)
        assert isinstance(rec["top_concepts"], dict)
    assert [r["start_tc"] for r in doc["shots"]] == ["00:00:00;00", "00:01:00;02", "00:10:00;00"]


def test_query_export_follows_search_order(index):
    results = index.search("cat OR dog", top=1000)
    doc = json.loads(export_text(index, "json", query="cat OR dog"))
    assert [r["shot_id"] for r in doc["shots"]] == [r.shot_id for r in results]
    assert [r["score"] for r in doc["shots"]] == [r.score for r in results]


def test_query_within_one_video(index):
    vid = video_id(index, "v0.mp4")
    hits = select(index, target="v0.mp4", query="cat")
    assert hits and {index.store.shots([h[0]])[h[0]]["video_id"] for h in hits} == {vid}


def test_min_score_keeps_shots_with_a_selected_concept_above_it(index):
    vid = video_id(index, "v2.mp4")
    rows = list(csv.DictReader(io.StringIO(export_text(index, "csv", target=vid, concepts=["dog"], min_score=0.5))))
    expected = [s["idx"] for s in shot_table(index, vid) if index.store.shot_scores(s["id"]).get("dog", 0) >= 0.5]
    assert [int(r["shot_index"]) for r in rows] == expected


# ---- edl ------------------------------------------------------------------------
EVENT = re.compile(r"^(\d{3,})\s+(\S+)\s+V\s+C\s+(\S+) (\S+) (\S+) (\S+)$")


def parse_edl(text: str) -> tuple[dict, list[dict]]:
    header, events = {}, []
    for line in text.splitlines():
        if m := EVENT.match(line):
            events.append(dict(zip(["n", "reel", "src_in", "src_out", "rec_in", "rec_out"], m.groups())))
        elif line.startswith("* FROM CLIP NAME:"):
            events[-1]["clip"] = line.split(":", 1)[1].strip()
        elif ":" in line and not line.startswith("*") and line.strip():
            key, value = line.split(":", 1)
            header[key] = value.strip()
    return header, events


@pytest.mark.parametrize("name, fps, fcm", [
    pytest.param("v1.mp4", 25, "NON-DROP FRAME", id="25"),
    pytest.param("ntsc.mov", NTSC, "DROP FRAME", id="29.97-df"),
    pytest.param("phone.mp4", 28, "NON-DROP FRAME", id="vfr-27.6-avg-counts-at-28"),
])
def test_edl_events_match_shot_table(index, name, fps, fcm):
    vid = video_id(index, name)
    header, events = parse_edl(export_text(index, "edl", target=vid))
    shots = shot_table(index, vid)
    assert header == {"TITLE": name, "FCM": fcm}
    assert len(events) == len(shots)
    start = "01:00:00;00" if fcm == "DROP FRAME" else "01:00:00:00"
    assert events[0]["rec_in"] == start
    record = tc_frames(start, fps)
    for number, (ev, shot) in enumerate(zip(events, shots), 1):
        src_in, src_out = tc_frames(ev["src_in"], fps), tc_frames(ev["src_out"], fps)
        assert int(ev["n"]) == number and ev["clip"] == name
        assert (src_in, src_out) == (expected_frame(shot["start_s"], fps), expected_frame(shot["end_s"], fps))
        assert tc_frames(ev["rec_in"], fps) == record
        record += src_out - src_in
        assert tc_frames(ev["rec_out"], fps) == record


def test_vfr_timecodes_come_from_seconds_not_decoded_frames(index):
    _, events = parse_edl(export_text(index, "edl", target="phone.mp4"))
    assert [e["src_in"] for e in events] == ["00:00:00:00", "00:00:10:14"]  # 10.5 s × 28
    assert events[-1]["src_out"] == "00:00:12:07"  # 12.25 s × 28


def test_edl_of_a_query_lists_every_hit(index):
    hits = index.search("person", top=1000, min_score=0.5)
    _, events = parse_edl(export_text(index, "edl", query="person", min_score=0.5))
    assert len(events) == len(hits) and [e["clip"] for e in events] == [Path(h.video).name for h in hits]


# ---- html -----------------------------------------------------------------------
class Thumbs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and "thumb" in attrs.get("class", "").split():
            self.images.append(attrs)


def test_html_has_one_embedded_thumbnail_per_shot(index, tmp_path):
    vid = video_id(index, "v0.mp4")
    out = export(index, target="v0.mp4", fmt="html", out=tmp_path / "sheet.html")
    parser = Thumbs()
    parser.feed(out.read_text(encoding="utf-8"))
    shots = shot_table(index, vid)
    assert len(parser.images) == len(shots)
    for img, shot in zip(parser.images, shots):
        prefix = "data:image/jpeg;base64,"
        assert img["src"].startswith(prefix)
        assert base64.b64decode(img["src"][len(prefix):]) == (index.root / shot["keyframe"]).read_bytes()


def test_html_missing_keyframe_gets_a_placeholder(index, caplog):
    shot = shot_table(index, video_id(index, "v0.mp4"))[0]
    (index.root / shot["keyframe"]).unlink()
    parser = Thumbs()
    parser.feed(render(index, [shot["id"]], "html"))
    assert len(parser.images) == 1 and "missing" in parser.images[0]["class"]
    assert "cannot be read" in caplog.text


# ---- trecvid --------------------------------------------------------------------
def test_trecvid_run_ranks_every_shot_per_concept(index):
    lines = [line.split() for line in export_text(index, "trecvid", run_id="run1").splitlines()]
    tags = {f"shot{r['video_id']}_{r['idx'] + 1}": r["id"] for r in index.store.db.query("SELECT * FROM shots")}
    assert {len(parts) for parts in lines} == {6}
    for concept in CONCEPTS:
        mine = [p for p in lines if p[0] == concept]
        assert len(mine) == len(tags) and {p[2] for p in mine} == set(tags)
        assert [int(p[3]) for p in mine] == list(range(1, len(tags) + 1))
        scores = [float(p[4]) for p in mine]
        assert scores == sorted(scores, reverse=True)
        first = tags[mine[0][2]]
        assert scores[0] == pytest.approx(index.store.shot_scores(first).get(concept, 0.0), abs=1e-6)
    assert {(p[1], p[5]) for p in lines} == {("Q0", "run1")}


def test_trecvid_of_one_video_and_concepts(index):
    vid = video_id(index, "v2.mp4")
    text = export_text(index, "trecvid", target=vid, concepts=["dog"], min_score=0.3)
    lines = [line.split() for line in text.splitlines()]
    assert {p[0] for p in lines} == {"dog"} and all(p[2].startswith(f"shot{vid}_") for p in lines)
    assert all(float(p[4]) >= 0.3 for p in lines)


def test_trecvid_run_id_must_be_one_word(index):
    with pytest.raises(UsageError, match="run id"):
        export_text(index, "trecvid", run_id="my run")


# ---- targets and errors ---------------------------------------------------------
def test_target_by_resolved_path_and_relative_path(tmp_path, monkeypatch):
    clip = tmp_path / "clips" / "a.mp4"
    with Index(tmp_path / "ix", create=True) as ix:
        ix.store.ensure_concepts(CONCEPTS)
        vid = add_video(ix.store, str(clip.resolve()), 25, [(0.0, 1.0)])
        monkeypatch.chdir(tmp_path)
        assert select(ix, target="clips/a.mp4") == select(ix, target=str(vid)) == select(ix, target="a.mp4")


def test_unknown_video_suggests_close_names(index):
    with pytest.raises(UsageError, match="did you mean 'v1.mp4'"):
        export_text(index, "csv", target="v1.mp5")


def test_ambiguous_basename_lists_the_ids(index):
    with index.store.db.atomic():
        add_video(index.store, "/other/v1.mp4", 25, [(0.0, 1.0)])
    with pytest.raises(UsageError, match="2 videos are named 'v1.mp4'"):
        export_text(index, "csv", target="v1.mp4")


def test_unknown_concept_is_the_search_error(index):
    with pytest.raises(UnknownNameError) as search_err:
        index.search("dgo")
    with pytest.raises(UnknownNameError) as export_err:
        export_text(index, "csv", target="v1.mp4", concepts=["dgo"])
    assert str(export_err.value) == str(search_err.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_takes_shot_ids_from_a_results_page(index, fmt):
    page = index.search("grass", top=3)
    text = render(index, [(r.shot_id, r.score) for r in page], fmt)
    assert isinstance(text, str) and text


# ---- command line ---------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_writes_each_format(index, tmp_path, fmt):
    out = tmp_path / f"export.{fmt}"
    assert cli.main(["export", "v2.mp4", "--format", fmt, "--index", str(index.root), "-o", str(out)]) == 0
    assert out.stat().st_size > 0


def test_cli_query_to_stdout(index, capsys):
    assert cli.main(["export", "--query", "night", "--format", "csv", "--concepts", "night",
                     "--min-score", "0.5", "--index", str(index.root)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(float(r["score"]) >= 0.5 for r in rows)


def test_cli_unknown_video_is_one_line_and_status_2(index, capsys):
    assert cli.main(["export", "nope.mp4", "--format", "csv", "--index", str(index.root)]) == 2
    assert capsys.readouterr().err.startswith("vidconcept: error: unknown video 'nope.mp4'")


def test_search_export_and_web_share_one_shot_record(index):
    """One record from the index to the page: a search hit, the export row of the same shot
    and the web's response for it agree field for field (the web adds only URLs)."""
    from vidconcept.export.rows import build_rows
    from vidconcept.records import ShotHit
    from vidconcept.web.schemas import Result

    hit = index.search(CONCEPTS[0], top=1)[0]
    (row,) = build_rows(index, [(hit.shot_id, hit.score)])
    assert type(hit) is type(row) is ShotHit and row == hit
    assert Path(hit.keyframe).is_file() and hit.start_tc == row.start_tc
    web = Result.from_record(hit).model_dump()
    assert {k: web[k] for k in ("shot_id", "video_id", "video", "start_s", "end_s", "score", "concepts")} == \
        {k: getattr(hit, k) for k in ("shot_id", "video_id", "video", "start_s", "end_s", "score", "concepts")}
    assert web["keyframe_url"] == f"/keyframes/{hit.shot_id}.jpg" and web["video_url"] == f"/videos/{hit.video_id}"

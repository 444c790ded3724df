"""The skip-and-refine decode (vidconcept.video.skim): shot detection on reference frames
with an exact second look, on clips encoded so that a cut falls on a non-reference frame
(fixed B-frame pattern, no scene-cut keyframes), against a decode of every frame."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tests.video_fixtures import FPS, SIZE, cut, dissolve, shot
from vidconcept.testing.videos import Clip
from vidconcept.video import ShotScanner, detect_shots
from vidconcept.video.decode import FrameReader
from vidconcept.video.skim import SkimReader

#: x264 with two B-frames between reference frames everywhere, never a keyframe at a cut.
FIXED_GOP = "scenecut=0:b-adapt=0:bframes=2:b-pyramid=none:keyint=50:min-keyint=50"


def encode(frames, path: Path, codec: str = "libx264", params: str = FIXED_GOP) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "23", "preset": "veryfast", "threads": "1", "x264-params": params}
        elif codec in ("mpeg2video", "mpeg4"):  # FFmpeg's encoders: a fixed I B B P pattern
            stream.codec_context.max_b_frames, stream.codec_context.gop_size = 2, 50
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def non_reference(path: Path) -> set[int]:
    """Frame numbers that a decoder skipping non-reference frames never outputs."""
    with av.open(str(path)) as c:
        all_pts = sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size)
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.codec_context.skip_frame = "NONREF"
        kept = {f.pts for f in c.decode(stream)}
    return {i for i, pts in enumerate(all_pts) if pts not in kept}


def boundaries(path: Path, skim: bool) -> tuple[list[tuple[int, int]], ShotScanner]:
    scanner = ShotScanner(path, keyframes=True, skim=skim)
    return [(s.start_frame, s.end_frame) for s, _ in scanner], scanner


def three_shots() -> Clip:
    return Clip([shot("coffee", 40), shot("chelsea", 42, "pan_right"), shot("astronaut", 40)],
                [cut(), cut()], size=SIZE, fps=FPS)


@pytest.fixture(scope="module")
def cut_on_b(tmp_path_factory) -> tuple[Path, Clip]:
    """Three shots; the cuts at frames 40 and 82 (non-reference B-frames of the fixed pattern)."""
    clip = three_shots()
    return encode(clip.frames(), tmp_path_factory.mktemp("skim") / "cut_on_b.mp4"), clip


@pytest.mark.parametrize("codec,ext", [("libx264", "mp4"), ("mpeg2video", "ts"), ("mpeg4", "mp4")])
def test_cut_on_a_non_reference_frame_is_found_at_its_exact_frame(tmp_path, codec, ext):
    path = encode(three_shots().frames(), tmp_path / f"cut_on_b.{ext}", codec=codec)
    skipped = non_reference(path)
    assert {40, 82} <= skipped  # the fixture does what it says
    full, _ = boundaries(path, skim=False)
    skim, scanner = boundaries(path, skim=True)
    assert skim == full == [(0, 40), (40, 82), (82, 122)]
    stats = scanner._reader.stats
    assert stats.blended > 0 and stats.refined > 0 and not stats.full  # it did skip, and looked again


def test_skim_reader_yields_every_frame_with_the_full_decode_times_and_exact_refined_pixels(cut_on_b):
    path, _ = cut_on_b
    full = [(f.index, f.time_s, f.small) for f in FrameReader(path)]
    reader = SkimReader(path)
    skim = [(f.index, f.time_s, f.small, f.av_frame is not None) for f in reader]
    assert [i for i, *_ in skim] == [i for i, *_ in full] == list(range(122))
    assert np.allclose([t for _, t, *_ in skim], [t for _, t, _ in full])
    decoded = [i for i, _, _, real in skim if real]
    assert len(decoded) == reader.stats.decoded + reader.stats.refined < len(full)
    for i in decoded:  # a frame the skim reader decoded is pixel for pixel the full decode's
        assert np.array_equal(skim[i][2], full[i][2])
    assert reader.info.frames == 122


def test_dissolve_through_non_reference_frames_matches_the_full_decode(tmp_path):
    clip = Clip([shot("coffee", 50), shot("chelsea", 55, "pan_right"), shot("rocket", 50)],
                [dissolve(24), cut()], size=SIZE, fps=FPS)
    path = encode(clip.frames(), tmp_path / "dissolve.mp4")
    assert boundaries(path, skim=True)[0] == boundaries(path, skim=False)[0]


def test_codecs_without_the_shortcut_decode_every_frame(tmp_path):
    clip = Clip([shot("coffee", 30), shot("chelsea", 30)], [cut()], size=SIZE, fps=FPS)
    path = encode(clip.frames(), tmp_path / "mpeg4.avi", codec="mpeg4")  # AVI: no timestamps to trust
    reader = SkimReader(path)
    frames = list(reader)
    assert reader.stats.full and all(f.av_frame is not None for f in frames) and len(frames) == 60
    assert [(s.start_frame, s.end_frame) for s in detect_shots(path).shots] == [(0, 30), (30, 60)]


def test_skim_is_on_unless_turned_off(cut_on_b, monkeypatch):
    path, _ = cut_on_b
    monkeypatch.delenv("VIDCONCEPT_SKIM", raising=False)
    assert type(ShotScanner(path)._reader) is SkimReader
    monkeypatch.setenv("VIDCONCEPT_SKIM", "0")
    assert type(ShotScanner(path)._reader) is FrameReader
    monkeypatch.setenv("VIDCONCEPT_SKIM", "1")
    assert type(ShotScanner(path)._reader) is SkimReader
    assert type(ShotScanner(path, detector="adaptive")._reader) is FrameReader  # reads BGR frames: no skim


def test_skimming_stops_where_the_second_looks_cost_more_than_it_saves(cut_on_b, monkeypatch):
    path, _ = cut_on_b
    import vidconcept.video.decode as decode
    import vidconcept.video.skim as skim

    monkeypatch.setattr(skim, "WORTH_AFTER", 1)
    monkeypatch.setattr(skim, "WORTH", 0.01)  # any second look outweighs what skimming saved
    seen = []
    for ahead in (1, 1 << 30):  # the decoding thread 2 or 16 frames ahead: it switches later or never
        monkeypatch.setattr(decode, "AHEAD_BYTES", ahead)
        reader = SkimReader(path)
        seen.append(([(f.index, f.time_s, f.small.tobytes(), f.av_frame is None) for f in reader], reader.stats))
    (frames, near), (frames_far, far) = seen
    assert frames == frames_far  # where it switched does not change what the detector and keyframes get
    assert near.full and near.redecoded > 0.01 * (near.blended + near.refined)
    assert near.decoded > 122 - len(non_reference(path))  # B-frames after the switch decoded by the first pass
    assert [(s.start_frame, s.end_frame) for s, _ in ShotScanner(path, skim=True)] == [(0, 40), (40, 82), (82, 122)]


def test_packets_must_step_by_a_frame():
    from vidconcept.video.skim import frame_steps

    frames = [i * 3600 for i in (0, 3, 1, 2, 6, 4, 5)]  # 25 fps at 90 kHz, in decode order
    assert frame_steps(frames, 1 / 90000, 25.0)
    fields = [i * 1800 for i in range(12)]  # a packet per field: half a frame apart
    assert not frame_steps(fields, 1 / 90000, 25.0)
    assert not frame_steps([0, 3600, None, 7200], 1 / 90000, 25.0)  # a packet without a timestamp
    assert not frame_steps([0, 3600, 3600, 7200], 1 / 90000, 25.0)  # a timestamp twice
    assert frame_steps([0], 1 / 90000, 25.0)  # too short to tell


def test_a_field_coded_looking_stream_is_decoded_in_full(cut_on_b, monkeypatch):
    path, _ = cut_on_b
    import vidconcept.video.skim as skim

    monkeypatch.setattr(skim, "MIN_FRAME_STEP", 1.5)  # as if its packets came at half-frame steps
    reader = SkimReader(path)
    assert [f.index for f in reader] == list(range(122)) and reader.stats.full and not reader.skimming

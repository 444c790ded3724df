"""How the decoder is threaded (vidconcept.video.decode): slice threads for streams whose
frames come in several slices, frame threads otherwise; frames decoded ahead in a thread,
the same frames in the same order as a decode on the reader's own thread."""
from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from tests.test_video_skim import encode, three_shots
from vidconcept.video import decode
from vidconcept.video.decode import FrameReader, read_head, slice_threads, slices, thread_type


@pytest.fixture(scope="module")
def sliced(tmp_path_factory) -> Path:
    """The three-shot clip with every frame coded as three slices."""
    return encode(three_shots().frames(), tmp_path_factory.mktemp("sliced") / "sliced.mp4",
                  params="slices=3:bframes=2")


@pytest.fixture(scope="module")
def one_slice(tmp_path_factory) -> Path:
    return encode(three_shots().frames(), tmp_path_factory.mktemp("one") / "one.mp4", params="bframes=2")


def _packets(path: Path) -> tuple[list[bytes], bytes | None]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [bytes(p) for p in c.demux(stream) if p.size], stream.codec_context.extradata


def test_slices_are_counted_in_length_prefixed_and_annex_b_packets(sliced, one_slice, tmp_path):
    packets, extradata = _packets(sliced)
    assert extradata and extradata[0] == 1  # MP4: avcC, length-prefixed NAL units
    assert {slices(p, extradata) for p in packets} == {3}
    packets, extradata = _packets(one_slice)
    assert {slices(p, extradata) for p in packets} == {1}
    ts = encode(itertools.islice(three_shots().frames(), 20), tmp_path / "sliced.ts", params="slices=2")
    packets, extradata = _packets(ts)  # MPEG-TS: Annex-B start codes
    assert {slices(p, extradata) for p in packets} == {2}


def test_thread_type_follows_the_stream(sliced, one_slice, tmp_path):
    assert thread_type(read_head(sliced)) == "SLICE"
    assert thread_type(read_head(one_slice)) == "AUTO"
    mpeg2 = encode(itertools.islice(three_shots().frames(), 20), tmp_path / "clip.ts", codec="mpeg2video")
    assert thread_type(read_head(mpeg2)) == "AUTO"  # not split into slices by FFmpeg's decoder
    assert FrameReader(sliced)._stream.thread_type.name == "SLICE"


def test_slice_threads_one_per_slice_at_most_one_per_core(sliced, one_slice, monkeypatch):
    """FFmpeg's own count for slice threads is cores + 1: more CPU and no faster on 2 cores."""
    monkeypatch.setattr(decode.os, "cpu_count", lambda: 2)
    assert slice_threads(read_head(sliced)) == 2  # three slices, two cores
    monkeypatch.setattr(decode.os, "cpu_count", lambda: 8)
    assert slice_threads(read_head(sliced)) == 3
    with FrameReader(sliced) as reader:
        assert reader._stream.thread_count == 3
    assert slice_threads(read_head(one_slice)) == 0  # frame threads: FFmpeg chooses
    assert slice_threads(None) == 0


def test_frames_decoded_ahead_equal_a_decode_on_one_thread(sliced, monkeypatch):
    def plain(path):
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            stream.codec_context.options = {"skip_loop_filter": "all"}  # as the reader decodes
            return [f.to_ndarray(format="gray") for f in c.decode(stream)]

    expected = plain(sliced)
    monkeypatch.setattr(decode, "AHEAD_BYTES", 1)  # the smallest queue: the thread waits on the reader
    frames = [(f.index, f.av_frame.to_ndarray(format="gray")) for f in FrameReader(sliced)]
    assert [i for i, _ in frames] == list(range(len(expected)))
    assert all(np.array_equal(a, b) for (_, a), b in zip(frames, expected))


def test_a_reader_closed_while_decoding_ahead_stops_its_thread(sliced):
    reader = FrameReader(sliced)
    frames = iter(reader)
    next(frames), next(frames)
    thread = reader._ahead._thread
    reader.close()
    assert not thread.is_alive() and reader._ahead is None and reader._container is None


def test_an_abandoned_iteration_stops_its_thread(sliced):
    import gc

    reader = FrameReader(sliced)
    frames = iter(reader)
    next(frames), next(frames)
    thread = reader._ahead._thread
    del frames
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()

"""Timecodes against known values (SMPTE ST 12-1 drop-frame examples) and round trips."""
from __future__ import annotations

from fractions import Fraction

import pytest

from vidconcept.timecode import (
    FrameRate,
    clock,
    frames_to_timecode,
    seconds_to_frame,
    seconds_to_timecode,
    timecode_to_frames,
)

NTSC = 30000 / 1001
NTSC_HD = 60000 / 1001

FRAME_CASES = [
    # (fps, frame, timecode)
    pytest.param(25, 0, "00:00:00:00", id="25-zero"),
    pytest.param(25, 24, "00:00:00:24", id="25-last-of-second"),
    pytest.param(25, 25, "00:00:01:00", id="25-one-second"),
    pytest.param(25, 90_000, "01:00:00:00", id="25-one-hour"),
    pytest.param(25, 25 * 86_400 + 3, "00:00:00:03", id="25-wraps-at-24h"),
    pytest.param(24, 1_440, "00:01:00:00", id="24-one-minute"),
    pytest.param(24000 / 1001, 24, "00:00:01:00", id="23.976-counts-24-ndf"),
    pytest.param(30, 1_800, "00:01:00:00", id="30-ndf-one-minute"),
    pytest.param(50, 3_000, "00:01:00:00", id="50-one-minute"),
    pytest.param(NTSC, 0, "00:00:00;00", id="29.97df-zero"),
    pytest.param(NTSC, 1_799, "00:00:59;29", id="29.97df-last-of-first-minute"),
    pytest.param(NTSC, 1_800, "00:01:00;02", id="29.97df-labels-0-1-skipped"),
    pytest.param(NTSC, 3_597, "00:01:59;29", id="29.97df-end-of-minute-1"),
    pytest.param(NTSC, 3_598, "00:02:00;02", id="29.97df-minute-2"),
    pytest.param(NTSC, 17_981, "00:09:59;29", id="29.97df-before-10-min"),
    pytest.param(NTSC, 17_982, "00:10:00;00", id="29.97df-tenth-minute-keeps-00"),
    pytest.param(NTSC, 19_782, "00:11:00;02", id="29.97df-minute-11"),
    pytest.param(NTSC, 107_892, "01:00:00;00", id="29.97df-one-hour"),
    pytest.param(29.97, 1_800, "00:01:00;02", id="29.97-rounded-snaps"),
    pytest.param(NTSC_HD, 3_600, "00:01:00;04", id="59.94df-labels-0-3-skipped"),
    pytest.param(NTSC_HD, 35_964, "00:10:00;00", id="59.94df-ten-minutes"),
]


@pytest.mark.parametrize("fps, frame, expected", FRAME_CASES)
def test_frames_to_timecode(fps, frame, expected):
    assert frames_to_timecode(frame, FrameRate.from_fps(fps)) == expected


SECONDS_CASES = [
    # (fps, seconds, timecode): the instant, counted at the nominal rate
    pytest.param(25, 1.52, "00:00:01:13", id="25"),
    pytest.param(NTSC, 60.0, "00:00:59;28", id="29.97df-df-is-exact-only-every-10-min"),
    pytest.param(NTSC, 60.06, "00:01:00;02", id="29.97df-frame-1800"),
    pytest.param(NTSC, 600.0, "00:10:00;00", id="29.97df-ten-minutes"),
    pytest.param(NTSC, 3600.0, "01:00:00;00", id="29.97df-one-hour"),
    pytest.param(27.6, 10.0, "00:00:10:00", id="vfr-average-counts-at-round-rate"),
    pytest.param(27.6, 10.5, "00:00:10:14", id="vfr-half-second"),
    pytest.param(29.9, 60.06, "00:01:00;02", id="vfr-near-29.97-snaps-to-df"),
    pytest.param(0.0, 2.0, "00:00:02:00", id="unknown-rate-reads-25"),
]


@pytest.mark.parametrize("fps, seconds, expected", SECONDS_CASES)
def test_seconds_to_timecode(fps, seconds, expected):
    assert seconds_to_timecode(seconds, FrameRate.from_fps(fps)) == expected


RATE_CASES = [
    # (measured fps, exact nominal fps, timebase, drop frame)
    pytest.param(25.0, Fraction(25), 25, False, id="25"),
    pytest.param(29.97003, Fraction(30000, 1001), 30, True, id="29.97"),
    pytest.param(59.94, Fraction(60000, 1001), 60, True, id="59.94"),
    pytest.param(23.976, Fraction(24000, 1001), 24, False, id="23.976"),
    pytest.param(30.0, Fraction(30), 30, False, id="30-is-not-29.97"),
    pytest.param(29.99, Fraction(30), 30, False, id="nearest-standard-wins"),
    pytest.param(27.6, Fraction(28), 28, False, id="vfr-average"),
    pytest.param(None, Fraction(25), 25, False, id="unknown"),
]


@pytest.mark.parametrize("fps, exact, timebase, drop", RATE_CASES)
def test_nominal_rate(fps, exact, timebase, drop):
    assert FrameRate.from_fps(fps) == FrameRate(exact, timebase, drop)


@pytest.mark.parametrize("fps", [25, 24000 / 1001, NTSC, NTSC_HD, 28])
def test_timecode_round_trip(fps):
    rate = FrameRate.from_fps(fps)
    for frame in range(0, 120_000, 37):
        assert timecode_to_frames(frames_to_timecode(frame, rate), rate) == frame


def test_drop_frame_never_labels_skipped_frames():
    rate = FrameRate.from_fps(NTSC)
    for frame in range(0, 40_000):
        _, minutes, seconds, frames = frames_to_timecode(frame, rate).replace(";", ":").split(":")
        if seconds == "00" and int(minutes) % 10:
            assert frames not in ("00", "01")


def test_seconds_to_frame_rounds_to_nearest():
    assert seconds_to_frame(0.019, FrameRate.from_fps(25)) == 0
    assert seconds_to_frame(0.021, FrameRate.from_fps(25)) == 1


def test_negative_frame_is_an_error():
    with pytest.raises(ValueError):
        frames_to_timecode(-1, FrameRate.from_fps(25))


@pytest.mark.parametrize("seconds,expected", [(0, "00:00.00"), (4.2, "00:04.20"), (75.5, "01:15.50"),
                                              (3600.004, "60:00.00")], ids=["zero", "seconds", "minutes", "hour"])
def test_clock(seconds, expected):
    assert clock(seconds) == expected

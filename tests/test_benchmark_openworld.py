"""benchmarks/openworld.py places a labelled shot by decoded frame number, not by frame / fps."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_openworld():
    spec = importlib.util.spec_from_file_location("openworld_bench", ROOT / "benchmarks" / "openworld.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shot_holding_matches_by_frame_number():
    ow = load_openworld()
    spans = {(0, 20, 1), (20, 45, 2), (45, 90, 3)}  # (start_frame, end_frame exclusive, shot id)
    assert ow.shot_holding(spans, 0) == 1
    assert ow.shot_holding(spans, 19) == 1
    assert ow.shot_holding(spans, 20) == 2  # end is exclusive
    assert ow.shot_holding(spans, 89) == 3


def test_shot_holding_outside_every_shot_takes_the_nearest():
    ow = load_openworld()
    spans = {(0, 20, 1), (40, 60, 2)}  # frames 20-39: a transition no shot holds
    assert ow.shot_holding(spans, 24) == 1
    assert ow.shot_holding(spans, 38) == 2
    assert ow.shot_holding(set(), 5) is None

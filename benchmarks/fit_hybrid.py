"""Fit the hybrid detector's rule (``vidconcept.video.hybrid.HybridRule``) on the dev clips only.

For each dev clip with labels (``benchmarks/data/shots/*.json``, ``"split": "dev"``) it caches, in
``--cache`` (default ``runs/shots-cache``, git-ignored), what the rule reads: the cues' candidates
(``TransitionDetector`` at the hybrid's minimum shot length: frame, kind, frame difference, gradual
span), every frame's difference, and TransNetV2's probability of every frame (the published tiling;
about 20 s of CPU per minute of video, once). It then scores every rule of a small grid as
:class:`~vidconcept.video.hybrid.HybridDetector` decides, in both modes: on every frame (GPU) and
where the cues ask (CPU: the frames around weak cuts, dissolves and unreported spikes; the
probabilities there are the tiling's, which the detector's 48-frame probes match within 0.13).
Held-out clips are never read. Prints, per mode, the best rules (F1, then fewest frames shown to
the network) and a one-parameter-at-a-time sweep around ``DEFAULT_RULE``, as JSON.

Usage::

    python benchmarks/fit_hybrid.py [--shared DIR] [--cache DIR]
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vidconcept.metrics.shots import BoundaryScore, score_typed  # noqa: E402
from vidconcept.testing.footage import found_and_missing  # noqa: E402
from vidconcept.video.decode import FrameReader  # noqa: E402
from vidconcept.video.hybrid import DEFAULT_RULE, REACH, HybridDetector, HybridRule, _Run  # noqa: E402
from vidconcept.video.transitions import TransitionDetector  # noqa: E402
from vidconcept.video.transnet import PROBE_CONTEXT, WindowedTransNet, load_transnet, transnet_frame  # noqa: E402

GRID = {"confirm": (0.05, 0.1, 0.2, 0.3, 0.4, 0.5), "confirm_gradual": (0.02, 0.05, 0.5),
        "sure": (1.5, 2.0, 3.0, 1e9), "agree": (0.1, 0.15, 0.2, 0.3, 1.01), "suspect": (0.5, 1.0, 2.0, 1e9)}
THRESHOLD = TransitionDetector().threshold
RATIO = TransitionDetector().ratio


def probabilities(path: Path, cache: Path, name: str) -> np.ndarray:
    """TransNetV2's probability of every frame (every window run), cached per clip."""
    out = cache / f"{name}.npz"
    if out.exists():
        return np.load(out)["probs"]
    tiles = WindowedTransNet(load_transnet("cpu"))
    for f in FrameReader(path):
        tiles.add(f.index, transnet_frame(f.small))
    tiles.finish()
    tiles.compute(range(tiles.windows_total()))
    probs = np.array([tiles.prob(i) for i in range(tiles.end)])
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(out, probs=probs)
    return probs


def cue_signals(path: Path, cache: Path, name: str) -> dict:
    """The cues' candidates ``(frame, kind, difference, gradual span)`` and every frame's
    difference, as the hybrid sees them; cached per clip."""
    from scenedetect import FrameTimecode

    out = cache / f"{name}.hybrid-cues.pkl"
    if out.exists():
        return pickle.loads(out.read_bytes())
    cues = TransitionDetector(min_scene_len=HybridDetector.__init__.__defaults__[1])
    diff, black, cands = [], [], []
    reader = FrameReader(path)

    def note(frames):
        for c in frames:
            f = c.frame_num
            span = next((s for s in reversed(cues.gradual_spans) if s[0] < f < s[1]), None)
            kind = "gradual" if span else ("black" if black[f] != black[f - 1] else "cut")
            cands.append((f, kind, diff[f], span))

    tc = None
    for frame in reader:
        tc = FrameTimecode(frame.index, fps=reader.info.fps or 25.0)
        found = cues.process_frame(tc, frame.small)
        d, b = cues.newest_stats
        diff.append(d)
        black.append(b)
        note(found)
    note(cues.post_process(tc))
    signals = {"cands": cands, "diff": np.array(diff)}
    cache.mkdir(parents=True, exist_ok=True)
    out.write_bytes(pickle.dumps(signals))
    return signals


def _spikes(diff: np.ndarray, rule: HybridRule, near: list[int]) -> list[tuple[int, float, bool]]:
    """Spikes of the difference the cues did not report, as :meth:`HybridDetector._observe` marks them."""
    mean = np.convolve(np.concatenate([np.zeros(4), diff]), np.ones(4) / 4, mode="valid")[:len(diff)]
    hits = np.flatnonzero((diff >= rule.suspect * THRESHOLD) & (diff >= 2 * mean))
    return [(int(f), float(diff[f]), bool(diff[f] >= RATIO * mean[f])) for f in hits
            if all(abs(f - n) > REACH for n in near)]


def _runs(p: np.ndarray, threshold: float) -> list[tuple[int, int, int]]:
    """``(first, last, boundary)`` of each run above ``threshold`` (as ``_RunScanner``/``_Run``)."""
    above = np.concatenate([[False], p > threshold, [False]]).astype(np.int8)
    starts, ends = np.flatnonzero(np.diff(above) == 1), np.flatnonzero(np.diff(above) == -1) - 1
    out = []
    for a, b in zip(starts, ends):
        run = _Run(int(a), int(b), int(a + np.argmax(p[a:b + 1])), 0.0)
        out.append((run.first, run.last, run.boundary))
    return out


def decide(rule: HybridRule, signals: dict, probs: np.ndarray, every_frame: bool) -> tuple[list[int], int]:
    """The hybrid's boundaries for one rule, and how many frames the network was fed."""
    cands, diff = signals["cands"], signals["diff"]
    stands = [kind == "black" or (kind == "cut" and d >= rule.sure * THRESHOLD) for _, kind, d, _ in cands]
    sure = [(c[0], (c[0], c[0])) for c, ok in zip(cands, stands) if ok]
    asked = [(f, kind, d, span, False) for (f, kind, d, span), ok in zip(cands, stands) if not ok]
    asked += [(f, "spike", d, None, sharp) for f, d, sharp in _spikes(diff, rule, [c[0] for c in cands])]

    def reach(f, span):
        lo, hi = span or (f, f)
        return lo - REACH, hi + (REACH if span else REACH - 1)

    seen = np.ones(len(probs), bool) if every_frame else np.zeros(len(probs), bool)
    for f, _, _, span, _ in asked:
        lo, hi = reach(f, span)
        seen[max(0, lo):hi + 1] = True
    fed = len(probs) if every_frame else sum(hi - lo + 1 + 2 * PROBE_CONTEXT
                                             for lo, hi in (reach(f, s) for f, _, _, s, _ in asked))
    p = np.where(seen, probs, 0.0)
    kept = list(sure)
    for f, kind, d, span, sharp in asked:
        lo, hi = reach(f, span)
        peak = float(p[max(0, lo):hi + 1].max(initial=0.0))
        ok = {"gradual": peak >= rule.confirm_gradual, "cut": peak >= rule.confirm,
              "spike": sharp and d >= rule.sure * THRESHOLD and peak >= rule.agree}[kind]
        if ok:
            kept.append((f, span or (f, f)))
    out = [f for f, _ in kept]
    for first, last, boundary in _runs(p, rule.add):
        if not any(first - REACH <= hi and lo <= last + REACH + 1 for _, (lo, hi) in kept):
            out.append(boundary)
    boundaries = []
    for f in sorted(set(out)):
        if not boundaries or f > boundaries[-1] + 1:
            boundaries.append(f)
    return boundaries, fed


def evaluate(rule: HybridRule, data: list, every_frame: bool) -> dict:
    total, fed, frames = BoundaryScore(0, 0, 0), 0, 0
    for truth, signals, probs in data:
        found, n = decide(rule, signals, probs, every_frame)
        total = total + score_typed(found, truth)["all"]
        fed, frames = fed + n, frames + len(probs)
    return {**total.to_dict(), "network_frames_share": round(fed / frames, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path)
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "shots-cache")
    args = parser.parse_args(argv)
    truths = [json.loads(p.read_text()) for p in sorted((ROOT / "benchmarks" / "data" / "shots").glob("*.json"))]
    dev = [t for t in truths if t["split"] == "dev"]
    found, missing = found_and_missing(dev, lambda t: t["locate"], lambda t: t["clip"], shared=args.shared)
    data = [(t, cue_signals(p, args.cache, t["clip"]), probabilities(p, args.cache, t["clip"])) for t, p in found]
    out: dict = {"dev_clips": [t["clip"] for t, _ in found], "missing": missing, "default": {}, "best": {},
                 "sweep": {}}
    for mode, every in (("every_frame", True), ("cpu", False)):
        out["default"][mode] = evaluate(DEFAULT_RULE, data, every)
        results = [{**dict(zip(GRID, values)), **evaluate(HybridRule(**dict(zip(GRID, values))), data, every)}
                   for values in itertools.product(*GRID.values())]
        results.sort(key=lambda r: (-r["f1"], r["network_frames_share"]))
        out["best"][mode] = results[:5]
        out["sweep"][mode] = {k: {str(v): evaluate(dataclasses.replace(DEFAULT_RULE, **{k: v}), data, every)["f1"]
                                  for v in values} for k, values in GRID.items()}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

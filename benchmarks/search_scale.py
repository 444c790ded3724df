"""Search latency at scale: fill an index with N synthetic shots, then time queries.

Scores follow what a concept model produces (most shots near 0, a few per cent
clearly positive); features are unit vectors drawn around a few thousand cluster
centres (shots of one scene look alike), at the model's dimension. Prints JSON.

    python benchmarks/search_scale.py --shots 1000000 --json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from vidconcept.api import Index
from vidconcept.index.store import ShotData, Store
from vidconcept.index.vectors import VectorIndex, normalise, open_vectors


def default_model_shape() -> tuple[list[str], int, str]:
    from vidconcept.config import resolve_model_dir
    from vidconcept.model import create_backbone, read_config

    cfg = read_config(resolve_model_dir())
    kind = "softmax" if cfg.output == "softmax" and not cfg.detectors else "sigmoid"
    return list(cfg.concepts), create_backbone(cfg.backbone, weights="none").num_features, kind


def synthetic_scores(rng: np.random.Generator, n: int, c: int, kind: str) -> np.ndarray:
    """``sigmoid`` (independent detectors): per concept a prior between 0.5 % and 10 %;
    positives score ~Beta(6,2), others ~Beta(0.4,12). ``softmax`` (ImageNet classes):
    a peaked Dirichlet over ~10 plausible classes per shot, the rest ~0."""
    if kind == "softmax":
        out = np.zeros((n, c), np.float32)
        cols = rng.integers(0, c, size=(n, 10))
        np.put_along_axis(out, cols, rng.dirichlet(np.full(10, 0.3), size=n).astype(np.float32), axis=1)
        return out
    prior = rng.uniform(0.005, 0.10, size=c)
    positive = rng.random((n, c)) < prior
    return np.where(positive, rng.beta(6, 2, (n, c)), rng.beta(0.4, 12, (n, c))).astype(np.float32)


def fill(store: Store, concepts: list[str], dim: int, kind: str, n: int, seed: int, per_video: int = 500) -> float:
    rng = np.random.default_rng(seed)
    centres = normalise(rng.normal(size=(max(64, n // 400), dim)).astype(np.float32))
    cids = store.ensure_concepts(concepts)
    store.set_meta("feature_dim", dim)
    ids = [cids[c] for c in concepts]
    start = time.perf_counter()
    for v in range(0, n, per_video):
        k = min(per_video, n - v)
        shots = [ShotData(i, i * 50, i * 50 + 50, i * 2.0, i * 2.0 + 2, None) for i in range(k)]
        feats = centres[rng.integers(0, len(centres), k)] + rng.normal(scale=0.5 / np.sqrt(dim), size=(k, dim))
        store.replace_video({"path": f"/synthetic/{v // per_video:06d}.mp4", "duration_s": 2.0 * k},
                            shots, synthetic_scores(rng, k, len(concepts), kind), ids, feats.astype(np.float32))
    return time.perf_counter() - start


def timed(fn, queries) -> list[float]:
    out = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(ms: list[float]) -> dict:
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p95": round(float(np.percentile(ms, 95)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", help="index folder to (re)use; default: a temporary folder, deleted after")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    concepts, dim, kind = default_model_shape()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="vidconcept-scale-"))
    rng = np.random.default_rng(args.seed + 1)
    try:
        store = Store.open(root)
        fill_s = fill(store, concepts, dim, kind, args.shots, args.seed) if store.shot_count() != args.shots else None
        t = time.perf_counter()
        vectors = open_vectors(store, dim, rebuild=fill_s is not None)  # a reused folder keeps its vectors
        build_s = time.perf_counter() - t
        store.close()
        index = Index(root)
        names = rng.choice(concepts, size=(args.queries, 3))
        patterns = ["{0} AND ({1} OR {2})", "{0} AND {1} NOT {2}", "{0} OR {1} OR {2}"]
        single = [str(n[0]) for n in names]
        boolean = [patterns[i % 3].format(*n) for i, n in enumerate(names)]
        cold = timed(lambda q: index.search(q, top=20), boolean[:1])
        index.search(single[0])
        ids = index.store.shot_ids()
        probes = rng.choice(ids, size=args.queries)
        concept_ms = timed(lambda q: index.search(q, top=20), single)
        boolean_ms = timed(lambda q: index.search(q, top=20), boolean)
        similar_ms = timed(lambda s: index.similar(shot=int(s), top=10), probes)
        recall = recall_at_10(index, probes[:50])
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        out = {
            "shots": args.shots, "concepts": len(concepts), "scores": kind, "dim": dim, "vector_index": vectors.kind,
            "concept_query_p50_ms": pct(concept_ms)["p50"], "concept_query_p95_ms": pct(concept_ms)["p95"],
            "boolean_query_p50_ms": pct(boolean_ms)["p50"], "boolean_query_p95_ms": pct(boolean_ms)["p95"],
            "boolean_first_query_ms": round(cold[0], 1),
            "similar_p50_ms": pct(similar_ms)["p50"], "similar_p95_ms": pct(similar_ms)["p95"],
            "similar_recall_at_10": recall,
            "fill_s": round(fill_s, 1) if fill_s else None, "vector_build_s": round(build_s, 1) if fill_s else None,
            "index_size_mb": round(size / 2**20, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} cores",
        }
        index.close()
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out, indent=None if args.json else 2))


def recall_at_10(index: Index, probes) -> float:
    """Overlap of the approximate top 10 with exact (brute-force) search on the same features."""
    exact = VectorIndex(index.vectors().dim, kind="flat")
    for ids, mat in index.store.iter_features():
        exact.add(ids, mat)
    hits = 0
    for s in probes:
        q = index.store.feature(int(s))[None, :]
        _, want = exact.search(q, 10)
        _, got = index.vectors().search(q, 10)
        hits += len(set(want[0]) & set(got[0]))
    return round(hits / (10 * len(probes)), 4)


if __name__ == "__main__":
    main()

"""Which layout of per-shot concept scores answers queries fastest (issue 23).

For N shots and C sigmoid concepts (scores as in ``search_scale.py``), times in one
process, alternating, the two operations a query is made of:

* top 20 of one concept (and the count of shots >= 0.5 that a total needs);
* ``a AND (b OR c)`` over three concepts, then its top 20;

over these layouts: concept-major ``uint8`` codes (what :mod:`vidconcept.index.columns`
stores; threshold selection), ``uint16`` codes, ``float16`` and ``float32`` columns
(``argpartition``), and a shot-major ``float32`` matrix (a column is a strided read).
Prints JSON with each layout's p50/p95 CPU time in ms and its bytes per shot and concept.

    python benchmarks/score_layouts.py --shots 1000000 --json
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

TOP = 20


def top_by_partition(col: np.ndarray) -> np.ndarray:
    part = np.argpartition(col, len(col) - TOP)[-TOP:]
    return part[np.argsort(-col[part].astype(np.float32), kind="stable")]


def top_by_threshold(codes: np.ndarray, levels: int) -> np.ndarray:
    """As the column store selects: the highest code t with >= TOP shots at or above it
    (binary search of comparison counts), then only those shots (and code t-1) are sorted."""
    lo, hi = 0, int(codes.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if np.count_nonzero(codes >= mid) >= TOP else (lo, mid - 1)
    cand = np.flatnonzero(codes >= max(lo - 1, 0))
    return cand[np.argsort(-codes[cand].astype(np.int32), kind="stable")][:TOP]


def layouts(scores: np.ndarray) -> dict:
    """name → (columns by concept, top-k function, count >= 0.5 function, bytes per value)."""
    u8 = [np.clip(np.floor(c * 254) + 1, 0, 255).astype(np.uint8) for c in scores]
    u16 = [np.clip(np.floor(c.astype(np.float64) * 65534) + 1, 0, 65535).astype(np.uint16) for c in scores]
    rows = np.ascontiguousarray(scores.T)  # shot-major
    return {
        "uint8 codes (concept-major)": (u8, lambda c: top_by_threshold(c, 256), lambda c: np.count_nonzero(c >= 128), 1),
        "uint16 codes (concept-major)": (u16, lambda c: top_by_threshold(c, 65536),
                                         lambda c: np.count_nonzero(c >= 32768), 2),
        "float16 (concept-major)": ([c.astype(np.float16) for c in scores], top_by_partition,
                                    lambda c: np.count_nonzero(c >= 0.5), 2),
        "float32 (concept-major)": (list(scores), top_by_partition, lambda c: np.count_nonzero(c >= 0.5), 4),
        "float32 (shot-major)": ([rows[:, j] for j in range(rows.shape[1])], top_by_partition,
                                 lambda c: np.count_nonzero(c >= 0.5), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=1_000_000)
    ap.add_argument("--concepts", type=int, default=38)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    prior = rng.uniform(0.005, 0.10, size=args.concepts)
    scores = np.stack([np.where(rng.random(args.shots) < p, rng.beta(6, 2, args.shots),
                                rng.beta(0.4, 12, args.shots)).astype(np.float32) for p in prior])
    scores[scores < 1e-3] = 0
    lay = layouts(scores)
    picks = rng.integers(0, args.concepts, size=(args.queries, 3))
    times: dict[str, dict[str, list[float]]] = {name: {"one": [], "and_or": []} for name in lay}
    for a, b, c in picks:  # alternating: every layout sees the same machine state
        for name, (cols, top, count, _) in lay.items():
            t = time.thread_time()  # CPU time: a loaded machine inflates wall time, not this
            top(cols[a])
            count(cols[a])
            times[name]["one"].append((time.thread_time() - t) * 1000)
            t = time.thread_time()
            combined = np.minimum(cols[a], np.maximum(cols[b], cols[c]))
            top(combined)
            count(combined)
            times[name]["and_or"].append((time.thread_time() - t) * 1000)
    out = {"shots": args.shots, "concepts": args.concepts, "load": round(os.getloadavg()[0], 1), "layouts": {
        name: {"one_concept_p50_ms": round(float(np.percentile(t["one"], 50)), 2),
               "one_concept_p95_ms": round(float(np.percentile(t["one"], 95)), 2),
               "and_or_p50_ms": round(float(np.percentile(t["and_or"], 50)), 2),
               "and_or_p95_ms": round(float(np.percentile(t["and_or"], 95)), 2),
               "mb_per_million_shots_per_concept": lay[name][3]}
        for name, t in times.items()}}
    print(json.dumps(out, indent=None if args.json else 2))


if __name__ == "__main__":
    main()

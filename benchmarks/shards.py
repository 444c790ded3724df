"""Sharded search latency: one archive of N synthetic shots split into 1, 2, 4 … shards.

For each shard count S the archive is S index folders of N/S shots each (filled by
``search_scale.build``: synthetic sigmoid scores in the column store, as that benchmark's
``--concepts`` mode), listed in a manifest. The same three-concept boolean queries
(``search_scale.PATTERNS``) are timed, interleaved query by query so that the machine's load
hits every variant alike, on

* ``one_shard``: one of the S shards alone, through :class:`vidconcept.Index` (what each shard does);
* ``sharded_local``: all S through :class:`vidconcept.shards.ShardedIndex`, shards on threads;
* ``sharded_ray`` (``--ray``): the same with one Ray actor per shard (a local runtime of ``--ray-cpus``).

Wall times, and the process's CPU time per query (``cpu_*``: every thread of this process,
so the shards' work when served locally) which a loaded machine does not inflate.

``fan_out_overhead_p50_ms`` is the sharded p50 less the one-shard p50. Issue 34's target reads
``sharded_* p95 / one_shard p95`` at S = 4 (within 2x).

    python benchmarks/shards.py --shots 400000 --shards 1 2 4 --dir runs/shards-400k --ray --json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_scale import PATTERNS, build, pct, rss_mb  # noqa: E402  (the filler and timers, shared)

from vidconcept.api import Index  # noqa: E402
from vidconcept.shards import Manifest, ShardedIndex  # noqa: E402


def archive(root: Path, shots: int, count: int, concepts: int, seed: int) -> tuple[Path, dict]:
    """``count`` shards of ``shots / count`` shots under ``root`` (reused when already filled)."""
    manifest = root / "shards.json"
    if not manifest.exists():
        ShardedIndex.init(manifest, count=count)
    fills = {}
    for i, shard in enumerate(Manifest.load(manifest).shards):
        args = SimpleNamespace(shots=shots // count, concepts=concepts, seed=seed * 1000 + count * 10 + i)
        fills[shard.name] = build(args, shard.path)
    return manifest, fills


def queries(concepts: int, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    picks = rng.choice([f"c{i:03d}" for i in range(concepts)], size=(n, 3))
    return [PATTERNS[i % 3].format(*p) for i, p in enumerate(picks)]


def measure(manifest: Path, qs: list[str], ray_cpus: int | None, top: int) -> dict:
    """Each query on one shard alone and on the sharded index(es), in turn; wall time in ms."""
    shard = Manifest.load(manifest).shards[0]
    variants = {"one_shard": Index(shard.path), "sharded_local": ShardedIndex(manifest)}
    if ray_cpus:
        variants["sharded_ray"] = ShardedIndex(manifest, serve="ray")
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in variants}
    try:
        for v in variants.values():  # the first query loads the columns (and, sharded, adopts the videos)
            v.search(qs[0], top=top)
        for q in qs:
            for name, v in variants.items():
                t, c = time.perf_counter(), time.process_time()
                v.search(q, top=top)
                times[name][0].append((time.perf_counter() - t) * 1000)
                times[name][1].append((time.process_time() - c) * 1000)
        out = {k: _stats(ms, with_cpu=k != "sharded_ray") for k, ms in times.items()}
        example = variants["sharded_local"].search(qs[0], top=top)
        out["example"] = {"query": qs[0], "total": example.total}
    finally:
        for v in variants.values():
            v.close()
    base = out["one_shard"]
    for name in variants:
        if name != "one_shard":
            out[name]["p95_vs_one_shard"] = round(out[name]["p95"] / base["p95"], 2)
            out[name]["fan_out_overhead_p50_ms"] = round(out[name]["p50"] - base["p50"], 2)
    return out


def _stats(ms: tuple[list[float], list[float]], with_cpu: bool) -> dict:
    """Wall min/p50/p95 and, where the work is in this process, its CPU time (all threads) per
    query: what the machine's load does not inflate. Ray actors' CPU is theirs, not counted."""
    out = {"min": round(min(ms[0]), 3), **pct(ms)}
    return {k: v for k, v in out.items() if with_cpu or not k.startswith("cpu")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=200_000, help="shots in the whole archive")
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--concepts", type=int, default=38,
                    help="synthetic sigmoid concepts (38: the shipped model's count)")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default="runs/shards", help="where the archives are built (reused when present)")
    ap.add_argument("--ray", action="store_true", help="also serve the shards through Ray actors")
    ap.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray runtime")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.ray:
        import logging

        import ray

        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    qs = queries(args.concepts, args.queries, args.seed)
    out = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "shots": args.shots,
           "concepts": args.concepts, "queries": args.queries, "top": args.top, "by_shards": {}}
    for count in args.shards:
        manifest, fills = archive(Path(args.dir) / f"{count}-shards", args.shots, count, args.concepts, args.seed)
        result = measure(manifest, qs, args.ray_cpus if args.ray else None, args.top)
        result["shots_per_shard"] = args.shots // count
        result["fill"] = fills
        out["by_shards"][str(count)] = result
        shown = {k: v for k, v in result.items() if k != "fill"}
        print(f"{count} shards: {json.dumps(shown)}", file=sys.stderr)
    out["rss_mb"] = rss_mb()
    out["machine"] = f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    print(json.dumps(out, indent=None if args.json else 2))


if __name__ == "__main__":
    main()

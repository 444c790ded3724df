"""Search latency at scale: fill an index with N synthetic shots, then time queries.

By default the shot scores follow the shipped model (``models/default``: independent
sigmoid detectors, so almost every (shot, concept) score is stored); ``--concepts
300`` makes a synthetic model of 300 sigmoid concepts instead. Scores: per concept
a prior between 0.5 % and 10 %, positives ~Beta(6,2), others ~Beta(0.4,12).
Features are unit vectors drawn around a few thousand cluster centres (shots of one
scene look alike), at the model's dimension.

The queries run in a fresh process (so "first query after a restart" and resident
memory are the searcher's own, not the filler's): one-concept and three-concept
boolean queries through :class:`vidconcept.Index` (column store), the same through
SQLite as before the column store (``--sqlite-queries``), per-concept totals (the
UI's "shots >= 0.5"), and ``similar`` with its recall@10 against exact search.

    python benchmarks/search_scale.py --shots 100000 --dir runs/scale-100k --json
    python benchmarks/search_scale.py --shots 1000000 --concepts 300 --dir runs/scale-1m-300 --json
    python benchmarks/search_scale.py --extrapolate runs/a.json runs/b.json   # growth, and 10M on paper

With ``--concepts`` (a synthetic model) the index has no features (no ``similar``).
``--during-ingest PATH`` times the queries again while a real ``vidconcept ingest PATH``
writes to the same index (searches read the segments it publishes). ``--migration N``
builds an index of N shots as schema 4 stored scores (one row per shot and concept) and
times its migration to packed rows.

    python benchmarks/search_scale.py --shots 1000000 --dir runs/scale-1m --json --during-ingest sample_videos
    python benchmarks/search_scale.py --migration 100000 --json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vidconcept.index import columns
from vidconcept.index.store import ShotData, Store
from vidconcept.index.vectors import normalise, open_vectors

PATTERNS = ["{0} AND ({1} OR {2})", "{0} AND {1} NOT {2}", "{0} OR {1} OR {2}"]


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


def fill(store: Store, concepts: list[str], dim: int, kind: str, n: int, seed: int, per_video: int = 2000) -> float:
    """Shots, scores and features through :meth:`Store.replace_video`, as ingest writes them."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.normal(size=(max(64, n // 400), dim)).astype(np.float32))
    cids = store.ensure_concepts(concepts)
    store.set_meta("feature_dim", dim)
    ids = [cids[c] for c in concepts]
    start = time.perf_counter()
    store.db.execute("PRAGMA synchronous = OFF")
    for v in range(0, n, per_video):
        k = min(per_video, n - v)
        shots = [ShotData(i, i * 50, i * 50 + 50, i * 2.0, i * 2.0 + 2, None) for i in range(k)]
        feats = centres[rng.integers(0, len(centres), k)] + rng.normal(scale=0.5 / np.sqrt(dim), size=(k, dim))
        store.replace_video({"path": f"/synthetic/{v // per_video:06d}.mp4", "duration_s": 2.0 * k},
                            shots, synthetic_scores(rng, k, len(concepts), kind), ids, feats.astype(np.float32))
    store.db.execute("PRAGMA synchronous = NORMAL")
    return time.perf_counter() - start


def fill_scores_only(store: Store, n_concepts: int, n: int, seed: int, per_video: int = 2000) -> float:
    """Shots and packed scores of ``n_concepts`` synthetic sigmoid concepts; no features."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    cids = store.ensure_concepts([f"c{i:03d}" for i in range(n_concepts)])
    store.db.execute("PRAGMA synchronous = OFF")
    for v in range(0, n, per_video):
        k = min(per_video, n - v)
        shots = [ShotData(i, i * 50, i * 50 + 50, i * 2.0, i * 2.0 + 2, None) for i in range(k)]
        store.replace_video({"path": f"/synthetic/{v // per_video:06d}.mp4", "duration_s": 2.0 * k}, shots,
                            synthetic_scores(rng, k, n_concepts, "sigmoid"), list(cids.values()), np.zeros((k, 0)))
    with store.db.atomic():
        store.db.execute("DELETE FROM features")
    store.db.execute("PRAGMA synchronous = NORMAL")
    return time.perf_counter() - start


def pct(ms: tuple[list[float], list[float]]) -> dict:
    """p50/p95 of wall time, and of this thread's CPU time (what a loaded machine does not inflate)."""
    wall, cpu = ms
    return {"p50": round(float(np.percentile(wall, 50)), 3), "p95": round(float(np.percentile(wall, 95)), 3),
            "cpu_p50": round(float(np.percentile(cpu, 50)), 3), "cpu_p95": round(float(np.percentile(cpu, 95)), 3)}


def timed(fn, items) -> tuple[list[float], list[float]]:
    wall, cpu = [], []
    for q in items:
        t, c = time.perf_counter(), time.thread_time()
        fn(q)
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.thread_time() - c) * 1000)
    return wall, cpu


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory now (``VmRSS``) or at its peak (``VmHWM``: unlike ``ru_maxrss`` it does
    not carry the parent's peak over ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


class _NoColumns:
    """Ranks through SQLite, as before the column store."""

    def get(self):
        return None


def query_phase(root: Path, n_queries: int, sqlite_queries: int, seed: int, similar: bool = True,
                during: str | None = None) -> dict:
    """Run in a fresh process: everything a searcher sees."""
    t = time.perf_counter()
    from vidconcept.api import Index

    import_s = time.perf_counter() - t
    rng = np.random.default_rng(seed + 1)
    t = time.perf_counter()
    index = Index(root)
    names = [c["name"] for c in index.store.concepts()]
    index.search(str(names[0]), top=20)
    first_ms = (time.perf_counter() - t) * 1000
    picks = rng.choice(names, size=(n_queries, 3))
    single = [str(n[0]) for n in picks]
    boolean = [PATTERNS[i % 3].format(*n) for i, n in enumerate(picks)]
    t = time.perf_counter()
    index.search(boolean[0], top=20)
    first_boolean_ms = (time.perf_counter() - t) * 1000
    out = {"first_query_after_restart_ms": round(first_ms, 1), "first_boolean_ms": round(first_boolean_ms, 1),
           "import_s": round(import_s, 2)}
    concept_ms = timed(lambda q: index.search(q, top=20), single)
    boolean_ms = timed(lambda q: index.search(q, top=20), boolean)
    deep_ms = timed(lambda q: index.search(q, top=20, offset=1000), boolean[: n_queries // 4])
    min_ms = timed(lambda q: index.search(q, top=20, min_score=0.5), boolean[: n_queries // 4])
    totals_ms = timed(lambda _: index.concepts(min_score=0.5), range(3))
    total = index.search(boolean[2], top=1).total
    out |= {"concept_query": pct(concept_ms), "boolean_query": pct(boolean_ms),
            "boolean_offset_1000": pct(deep_ms), "boolean_min_score_0.5": pct(min_ms),
            "concept_totals_ms": round(min(totals_ms[0]), 1), "example_total": [boolean[2], total]}
    if sqlite_queries:
        cols, index._score_columns = index._score_columns, _NoColumns()
        index.search(single[0], top=20)
        out["sqlite_concept_query"] = pct(timed(lambda q: index.search(q, top=20), single[:sqlite_queries]))
        index.search(boolean[0], top=20)  # the first loads its columns from SQLite
        out["sqlite_boolean_query"] = pct(timed(lambda q: index.search(q, top=20), boolean[:sqlite_queries]))
        index._score_columns = cols
    dim = index.store.get_meta("feature_dim")
    similar = similar and index.store.feature_digest()["count"] > 0
    if similar:
        ids = np.sort(index.store.shot_ids())
        probes = rng.choice(ids, size=n_queries)
        t = time.perf_counter()
        index.similar(shot=int(probes[0]), top=10)
        out["first_similar_ms"] = round((time.perf_counter() - t) * 1000, 1)
        out["vector_index"] = index.vectors().kind
        out["similar"] = pct(timed(lambda s: index.similar(shot=int(s), top=10), probes))
    out["rss_mb"] = rss_mb()
    out["peak_rss_mb"] = rss_mb("VmHWM")
    if dim and similar:
        out["similar_recall_at_10"] = recall_at_10(index, probes[:50])
    if during:
        out["during_ingest"] = during_ingest(index, during, single, boolean)
    index.close()
    return out


def during_ingest(index, path: str, single: list[str], boolean: list[str], limit_s: float = 600.0) -> dict:
    """The same queries while ``vidconcept ingest PATH`` writes to the index (a real ingest:
    decoding and the model share the machine's cores with the searches), for at most ``limit_s``
    seconds (then the ingest is stopped with SIGTERM: its videos so far stay, the rest is redone
    by the next run)."""
    from vidconcept.index.columns import writer_running

    cmd = [sys.executable, "-m", "vidconcept", "ingest", path, "--index", str(index.root)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t = time.perf_counter()
    while not writer_running(index.root) and proc.poll() is None:
        time.sleep(0.05)
    lock_s = time.perf_counter() - t
    kinds = {"concept": ([], []), "boolean": ([], [])}
    fallbacks = segments = 0
    i = 0
    while proc.poll() is None and time.perf_counter() - t < limit_s:
        kind, q = ("concept", single[i % len(single)]) if i % 2 else ("boolean", boolean[i % len(boolean)])
        w, c = timed(lambda q: index.search(q, top=20), [q])
        kinds[kind][0].extend(w)
        kinds[kind][1].extend(c)
        cs = index._score_columns.current
        fallbacks += cs is None
        segments = max(segments, len(cs.segments) if cs is not None else 0)
        i += 1
    if proc.poll() is None:  # still running (at a million shots it may first rebuild FAISS): stopped
        proc.terminate()
        proc.wait()
    err = proc.stderr.read()
    out = {"command": " ".join(cmd[1:]), "exit": proc.returncode, "lock_wait_s": round(lock_s, 1),
           "ingest_s": round(time.perf_counter() - t, 1), "queries": i, "sqlite_fallbacks": fallbacks,
           "max_segments_seen": segments}
    out |= {f"{k}_query": pct(v) for k, v in kinds.items() if v[0]}
    if proc.returncode:
        out["stderr_tail"] = err[-500:]
    out["videos_indexed_after"] = index.store.counts()["videos"]
    return out


def migration_bench(n: int, n_concepts: int, seed: int) -> dict:
    """An index of ``n`` shots as schema 4 stored scores (one row per shot and concept >= the floor),
    then the time ``Store.open`` takes to migrate it, and the file before and after."""
    import sqlite3

    import sqlite_utils

    from vidconcept.index import migrations
    from vidconcept.index.store import SCORE_FLOOR

    root = Path(tempfile.mkdtemp(prefix="vidconcept-migrate-"))
    try:
        db = sqlite_utils.Database(sqlite3.connect(root / "index.db"))
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = OFF")
        for version, _, fn in migrations.MIGRATIONS:
            if version <= 4:
                with db.atomic():
                    fn(db)
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '4')")
        db.conn.executemany("INSERT INTO concepts (id, name) VALUES (?, ?)",
                            [(c + 1, f"c{c:03d}") for c in range(n_concepts)])
        rng = np.random.default_rng(seed)
        db.execute("DROP INDEX scores_concept_score")  # built once at the end, as a bulk load
        for v in range(0, n, 2000):
            k = min(2000, n - v)
            db.execute("INSERT INTO videos (id, path) VALUES (?, ?)", [v // 2000 + 1, f"/s/{v}.mp4"])
            db.conn.executemany("INSERT INTO shots (id, video_id, idx, start_frame, end_frame, start_s, end_s) "
                                "VALUES (?, ?, ?, 0, 1, 0, 1)", [(v + i + 1, v // 2000 + 1, i) for i in range(k)])
            sc = synthetic_scores(rng, k, n_concepts, "sigmoid")
            r, c = np.nonzero(sc >= SCORE_FLOOR)
            db.conn.executemany("INSERT INTO scores VALUES (?, ?, ?)",
                                zip((r + v + 1).tolist(), (c + 1).tolist(), sc[r, c].astype(float).tolist()))
        db.execute("CREATE INDEX scores_concept_score ON scores (concept_id, score DESC)")
        db.conn.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = db.execute("SELECT count(*) FROM scores").fetchone()[0]
        db.close()
        before = sum(p.stat().st_size for p in root.glob("index.db*"))
        t, c = time.perf_counter(), time.process_time()
        Store.open(root).close()
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        after = sum(p.stat().st_size for p in root.glob("index.db*"))
        return {"migration_shots": n, "concepts": n_concepts, "score_rows": rows, "migration_s": round(wall, 1),
                "migration_cpu_s": round(cpu, 1), "migration_s_per_million_shots": round(wall * 1e6 / n, 1),
                "db_mb_before": round(before / 2**20, 1), "db_mb_after": round(after / 2**20, 1)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def recall_at_10(index, probes) -> float:
    """Overlap of the approximate top 10 with exact search (a streamed scan of every feature)."""
    queries = normalise(np.stack([index.store.feature(int(s)) for s in probes]))
    best_s = np.full((len(probes), 10), -np.inf, np.float32)
    best_i = np.zeros((len(probes), 10), np.int64)
    for ids, mat in index.store.iter_features(20_000):
        sims = queries @ normalise(mat).T
        all_s = np.concatenate([best_s, sims], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(ids, sims.shape)], axis=1)
        top = np.argpartition(-all_s, 10, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)
    hits = 0
    for q, want in zip(queries, best_i):
        _, got = index.vectors().search(q[None, :], 10)
        hits += len(set(want.tolist()) & set(got[0].tolist()))
    return round(hits / (10 * len(probes)), 4)


def disk(root: Path) -> dict:
    def size(paths) -> float:
        return round(sum(p.stat().st_size for p in paths if p.is_file()) / 2**20, 1)

    return {"sqlite_mb": size(root.glob("index.db*")), "faiss_mb": size(root.glob("vectors.faiss")),
            "columns_mb": size((root / columns.FOLDER).glob("*")) if (root / columns.FOLDER).exists() else 0.0}


def build(args, root: Path) -> dict:
    store = Store.open(root)
    info: dict = {}
    if store.shot_count() != args.shots:
        if args.concepts:
            info["fill_s"] = round(fill_scores_only(store, args.concepts, args.shots, args.seed), 1)
        else:
            concepts, dim, kind = default_model_shape()
            info["fill_s"] = round(fill(store, concepts, dim, kind, args.shots, args.seed), 1)
            if not args.no_similar:  # FAISS training dominates the build at a million shots
                t = time.perf_counter()
                open_vectors(store, dim, rebuild=True)
                info["vector_build_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    cs = columns.open_columns(store)  # builds it from SQLite when the fill did not
    info["column_build_s"] = round(time.perf_counter() - t, 1)
    info["concepts"] = len(cs.files)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # disk figures without a leftover write-ahead log
    store.close()
    return info


def extrapolate(paths: list[str]) -> dict:
    """Cost as ``a + b·N`` through the two runs (the scans grow linearly with shots), read at
    10M. On CPU time: wall time on a loaded machine is too noisy to fit a line through."""
    runs = sorted((json.loads(Path(p).read_text()) for p in paths), key=lambda r: r["shots"])
    small, large = runs[0], runs[-1]
    n0, n1, n = small["shots"], large["shots"], 10_000_000

    def line(a: float, b: float) -> float:
        return round(b + (b - a) / (n1 - n0) * (n - n1), 1)

    out: dict = {"from": [n0, n1]}
    for key in ("concept_query", "boolean_query", "boolean_offset_1000", "similar"):
        if key in small and key in large:
            out[key] = {f"{q}_growth": round(large[key][q] / small[key][q], 2) for q in ("cpu_p50", "cpu_p95")}
            out[key] |= {f"{q}_at_10M_ms": line(small[key][q], large[key][q]) for q in ("cpu_p50", "cpu_p95")}
    out["rss_mb_at_10M"] = line(small["rss_mb"], large["rss_mb"])
    out["disk_mb_at_10M"] = line(sum(small["disk"].values()), sum(large["disk"].values()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=100_000)
    ap.add_argument("--concepts", type=int, default=0,
                    help="a synthetic model of this many sigmoid concepts (default: the shipped model's)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--sqlite-queries", type=int, default=5,
                    help="queries timed through SQLite, as a reader does while a crashed writer's store is rebuilt (0: none)")
    ap.add_argument("--during-ingest", metavar="PATH", help="also time queries while `vidconcept ingest PATH` runs")
    ap.add_argument("--migration", type=int, metavar="N", help="time the migration of an N-shot schema 4 index")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", help="index folder to (re)use; default: a temporary folder, deleted after")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--query-only", action="store_true",
                    help="only time queries on the index in --dir (prints the query figures)")
    ap.add_argument("--no-similar", action="store_true", help="skip `similar` (no FAISS build or load)")
    ap.add_argument("--extrapolate", nargs=2, metavar="RUN.json", help="growth between two runs' JSON, and 10M")
    args = ap.parse_args()
    if args.extrapolate:
        print(json.dumps(extrapolate(args.extrapolate), indent=None if args.json else 2))
        return
    if args.migration:
        concepts = args.concepts or len(default_model_shape()[0])
        out = migration_bench(args.migration, concepts, args.seed)
        out["machine"] = f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
        print(json.dumps(out, indent=None if args.json else 2))
        return
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="vidconcept-scale-"))
    if args.query_only:
        print(json.dumps(query_phase(root, args.queries, args.sqlite_queries, args.seed, not args.no_similar,
                                     args.during_ingest)))
        return
    try:
        info = build(args, root)
        sqlite_queries = 0 if args.concepts else args.sqlite_queries  # its scores are not in SQLite
        cmd = [sys.executable, __file__, "--query-only", "--dir", str(root), "--queries", str(args.queries),
               "--sqlite-queries", str(sqlite_queries), "--seed", str(args.seed)] + ["--no-similar"] * args.no_similar \
            + (["--during-ingest", args.during_ingest] if args.during_ingest else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out = {"shots": args.shots, "model": f"synthetic {args.concepts} sigmoid" if args.concepts else "models/default",
               **info, **json.loads(proc.stdout.strip().splitlines()[-1]), "disk": disk(root),
               "machine": f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"}
        out["disk_per_million_shots_mb"] = round(sum(out["disk"].values()) * 1e6 / args.shots, 0)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out, indent=None if args.json else 2))


if __name__ == "__main__":
    main()

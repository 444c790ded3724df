"""Load on the real server while the index changes (issue 33): N clients, an ingest and a retrain.

Builds an index of the first sample video, adds an editor account and token, starts
``vidconcept serve`` on 127.0.0.1 (a subprocess: the real server), and runs ``--clients``
concurrent clients for ``--duration`` seconds, each looping over a mix of requests:
concept search, similar-to-shot, keyframe and a video Range request. A quarter into the run
``vidconcept ingest sample_videos/`` (the nightly job: another process) adds the other
videos; halfway, a retrain (``POST /api/concepts/NAME/labels``) runs. The run lasts at least
until the ingest is done. Prints (and with ``--out`` writes) JSON: p50/p95/p99/max per
endpoint in milliseconds, request and error counts, the ingest's and retrain's times.

    python benchmarks/serve_load.py --clients 32 --duration 60 --out benchmarks/results/serve_load.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_videos"
MIX = {"search": 0.4, "similar": 0.15, "keyframe": 0.3, "video_range": 0.15}
#: Queries are built from the index's own concepts (those with the most shots scoring >= 0.5).
QUERY_FORMS = ["{a}", "{a} OR {b}", "{a} AND NOT {b}", "{b}", "2*{a} + {c}"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidconcept", *args], check=True, capture_output=True, text=True,
                          **kwargs)


def _prepare(work: Path) -> tuple[Path, str]:
    """An index of the first sample video, a user concept, and an editor's API token."""
    first = work / "first"
    first.mkdir()
    videos = sorted(SAMPLES.glob("*.mp4"))
    shutil.copy(videos[0], first / videos[0].name)
    index = work / "index"
    _cli("ingest", str(first), "--index", str(index), "-q")
    from vidconcept.api import Index
    from vidconcept.concepts import add_concept

    with Index(index) as ix:
        ix.add_user("loadtest", "load-test-password", "editor")
        _, secret = ix.add_token("loadtest", "serve_load")
        shots = [int(s) for s in ix.store.shot_ids()]
        add_concept(ix, "bench", positive=shots[:2], negative=shots[2:4])
    return index, secret


class Recorder:
    def __init__(self):
        self.times: dict[str, list[float]] = {k: [] for k in MIX}
        self.errors: dict[str, list[str]] = {k: [] for k in MIX}

    def summary(self) -> dict:
        out = {}
        for kind, times in self.times.items():
            ms = np.array(times) * 1000
            out[kind] = {"requests": len(times), "errors": len(self.errors[kind]),
                         **({f"p{q}": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)} if len(ms) else {}),
                         "max": round(float(ms.max()), 1) if len(ms) else None,
                         "first_errors": self.errors[kind][:3]}
        return out


async def _timed(http: httpx.AsyncClient, rec: Recorder, kind: str, req: httpx.Request) -> httpx.Response | None:
    t0 = time.perf_counter()
    try:
        r = await http.send(req)
        await r.aread()
        ok, why = r.status_code in (200, 206), f"{r.status_code} {r.text[:120]}"
    except httpx.HTTPError as exc:
        r, ok, why = None, False, repr(exc)
    rec.times[kind].append(time.perf_counter() - t0)
    if not ok:
        rec.errors[kind].append(why)
    return r if ok else None


async def _client(http: httpx.AsyncClient, rec: Recorder, stop: asyncio.Event, rng: random.Random,
                  queries: list[str]) -> None:
    while not stop.is_set():
        r = await _timed(http, rec, "search", http.build_request("GET", "/api/search", params={"q": "bench", "top": 50}))
        shots = r.json()["results"] if r is not None else []
        for _ in range(20):
            kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
            shot = rng.choice(shots) if shots else None
            if kind == "search":
                req = http.build_request("GET", "/api/search", params={"q": rng.choice(queries), "top": 24})
            elif kind == "similar" and shot:
                req = http.build_request("GET", "/api/similar", params={"shot": shot["shot_id"], "top": 24})
            elif kind == "keyframe" and shot:
                req = http.build_request("GET", shot["keyframe_url"])
            elif shot:
                start = rng.randrange(0, 200_000)
                req = http.build_request("GET", shot["video_url"], headers={"range": f"bytes={start}-{start + 65535}"})
            else:
                continue
            await _timed(http, rec, kind, req)
            if stop.is_set():
                return


async def _run(base: str, secret: str, clients: int, duration: float, index: Path, concept: str) -> dict:
    rec, stop = Recorder(), asyncio.Event()
    headers = {"authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as http:
        names = [c["name"] for c in sorted((await http.get("/api/concepts")).json(), key=lambda c: -c["shots"])]
        queries = [f.format(a=names[0], b=names[1], c=names[2]) for f in QUERY_FORMS] + [concept]
        tasks = [asyncio.create_task(_client(http, rec, stop, random.Random(i), queries)) for i in range(clients)]
        t0 = time.perf_counter()
        await asyncio.sleep(duration / 4)
        ingest = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vidconcept", "ingest", str(SAMPLES), "--index", str(index), "-q", "--json",
            "--wait", "600", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        ingest_started = time.perf_counter()
        await asyncio.sleep(duration / 4)
        shots = (await http.get("/api/search", params={"q": queries[0], "top": 6})).json()["results"]
        t_retrain = time.perf_counter()
        retrain = await http.post(f"/api/concepts/{concept}/labels",
                                  json={"positive": [s["shot_id"] for s in shots[:3]],
                                        "negative": [s["shot_id"] for s in shots[3:]]})
        retrain_s = time.perf_counter() - t_retrain
        out, err = await ingest.communicate()
        ingest_s = time.perf_counter() - ingest_started
        await asyncio.sleep(max(0.0, duration - (time.perf_counter() - t0)))
        stop.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    summary = json.loads(out) if ingest.returncode in (0, 1) and out else {"stderr": err.decode()[-500:]}
    return {"endpoints": rec.summary(), "wall_s": round(wall, 1),
            "requests": sum(len(t) for t in rec.times.values()),
            "errors": sum(len(e) for e in rec.errors.values()),
            "ingest": {"returncode": ingest.returncode, "wall_s": round(ingest_s, 1),
                       "videos": summary.get("videos"), "shots": summary.get("shots")},
            "retrain": {"status": retrain.status_code, "wall_s": round(retrain_s, 2)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (at least until the ingest ends)")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve_load-") as tmp:
        work = Path(tmp)
        index, secret = _prepare(work)
        port = _free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        server = subprocess.Popen([sys.executable, "-m", "vidconcept", "serve", "--index", str(index),
                                   "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_up(base, secret, server)
            result = asyncio.run(_run(base, secret, args.clients, args.duration, index, "bench"))
        finally:
            server.terminate()
            server.wait(30)
    result = {"clients": args.clients, "duration_s": args.duration, "cpus": os.cpu_count(), **result}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


def _wait_up(base: str, secret: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/api/me", headers={"authorization": f"Bearer {secret}"}).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not start in 300 s")


if __name__ == "__main__":
    main()

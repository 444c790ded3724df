"""Load on the real server while the index changes (issue 33): N clients, an ingest and a retrain.

Builds an index of the first sample video, adds an editor account and token, starts
``vidconcept serve`` on 127.0.0.1 (a subprocess: the real server), and runs ``--clients``
concurrent clients for ``--duration`` seconds, each looping over a mix of requests:
concept search, similar-to-shot, keyframe and a video Range request. A quarter into the run
``vidconcept ingest sample_videos/`` (the nightly job: another process) adds the other
videos; halfway, a retrain (``POST /api/concepts/NAME/labels``) runs. The run lasts at least
until the ingest is done. Prints a table (``--json``: JSON; ``--out`` also writes the JSON):
p50/p95/p99/max per endpoint in milliseconds, request and error counts, the ingest's and
retrain's times, and what shared the CPUs: the load average before and after, and the CPU
seconds of the server, the ingest and this load generator (all on the same machine).

``--nice-ingest N`` runs the ingest under ``nice -n N``, as a nightly cron job should
(docs/cron.md); the retrain is a request to the server and is never niced. The server keeps
result pages per generation of the index, and the mix repeats six queries, so most searches are
answered from memory: ``--uncached-search`` gives every search its own ``min_score`` (at most
0.0001) to measure searches that run. ``--client httpx`` uses httpx instead of the default
minimal HTTP/1.1 client (httpx costs more CPU per request than the server, on the same cores).

    python benchmarks/serve_load.py --clients 32 --duration 60 --json --out benchmarks/results/serve_load.json
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
from typing import NamedTuple
from urllib.parse import urlencode, urlsplit

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


class Answer(NamedTuple):
    status: int
    body: bytes

    def json(self):
        return json.loads(self.body)


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams, one connection per request in flight.

    Why not httpx: at a few hundred requests a second httpx spent more CPU per request than the
    server it measured (2-3 ms vs ~1.5 ms), on the same two cores, so the figures measured the
    generator. This client sends the same requests (``--client httpx`` still uses httpx).
    """

    def __init__(self, base: str, headers: dict[str, str]):
        url = urlsplit(base)
        self.host, self.port = url.hostname, url.port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"host": url.netloc, **headers}.items())
        self._free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, params: dict | None = None, headers: dict | None = None,
                      json_body=None) -> Answer:
        target = path + ("?" + urlencode(params) if params else "")
        body = json.dumps(json_body).encode() if json_body is not None else b""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if json_body is not None:
            extra += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        conn = self._free.pop() if self._free else await asyncio.open_connection(self.host, self.port)
        reader, writer = conn
        try:
            writer.write(f"{method} {target} HTTP/1.1\r\n{self.head}{extra}\r\n".encode() + body)
            status_line = await reader.readuntil(b"\r\n")
            status = int(status_line.split(b" ", 2)[1])
            fields: dict[bytes, bytes] = {}
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.partition(b":")
                fields[name.strip().lower()] = value.strip()
            if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
                data = bytearray()
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    data += await reader.readexactly(size + 2)
                    del data[-2:]
                await reader.readuntil(b"\r\n")
                data = bytes(data)
            else:
                data = await reader.readexactly(int(fields.get(b"content-length", b"0")))
        except BaseException:
            writer.close()
            raise
        if fields.get(b"connection", b"").lower() == b"close":
            writer.close()
        else:
            self._free.append(conn)
        return Answer(status, data)

    async def aclose(self) -> None:
        for _, writer in self._free:
            writer.close()


class HttpxHttp:
    """The same interface over httpx (``--client httpx``: the generator of the first measurements)."""

    def __init__(self, base: str, headers: dict[str, str], clients: int):
        limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
        self.http = httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits)

    async def request(self, method: str, path: str, params: dict | None = None, headers: dict | None = None,
                      json_body=None) -> Answer:
        r = await self.http.request(method, path, params=params, headers=headers, json=json_body)
        return Answer(r.status_code, r.content)

    async def aclose(self) -> None:
        await self.http.aclose()


async def _timed(http, rec: Recorder, kind: str, path: str, **kwargs) -> Answer | None:
    t0 = time.perf_counter()
    try:
        r = await asyncio.wait_for(http.request("GET", path, **kwargs), 60)
        ok, why = r.status in (200, 206), f"{r.status} {r.body[:120]!r}"
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, httpx.HTTPError) as exc:
        r, ok, why = None, False, repr(exc)
    rec.times[kind].append(time.perf_counter() - t0)
    if not ok:
        rec.errors[kind].append(why)
    return r if ok else None


async def _client(http, rec: Recorder, stop: asyncio.Event, rng: random.Random, queries: list[str],
                  uncached: bool = False) -> None:
    while not stop.is_set():
        r = await _timed(http, rec, "search", "/api/search", params={"q": "bench", "top": 50})
        shots = r.json()["results"] if r is not None else []
        for _ in range(20):
            kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
            shot = rng.choice(shots) if shots else None
            if kind == "search":
                params = {"q": rng.choice(queries), "top": 24}
                if uncached:  # a new min_score each time (at most 0.0001): never a page the server holds
                    params["min_score"] = f"{rng.randrange(1, 10**9) / 10**13:.13f}"
                await _timed(http, rec, kind, "/api/search", params=params)
            elif kind == "similar" and shot:
                await _timed(http, rec, kind, "/api/similar", params={"shot": shot["shot_id"], "top": 24})
            elif kind == "keyframe" and shot:
                await _timed(http, rec, kind, shot["keyframe_url"])
            elif shot:
                start = rng.randrange(0, 200_000)
                await _timed(http, rec, kind, shot["video_url"], headers={"range": f"bytes={start}-{start + 65535}"})
            if stop.is_set():
                return


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux), ``None`` elsewhere or once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


async def _run(base: str, secret: str, clients: int, duration: float, index: Path, concept: str,
               nice: int = 0, client: str = "raw", uncached: bool = False) -> dict:
    rec, stop = Recorder(), asyncio.Event()
    headers = {"authorization": f"Bearer {secret}"}
    http = RawHttp(base, headers) if client == "raw" else HttpxHttp(base, headers, clients)
    try:
        names = [c["name"] for c in sorted((await http.request("GET", "/api/concepts")).json(),
                                           key=lambda c: -c["shots"])]
        queries = [f.format(a=names[0], b=names[1], c=names[2]) for f in QUERY_FORMS] + [concept]
        tasks = [asyncio.create_task(_client(http, rec, stop, random.Random(i), queries, uncached))
                 for i in range(clients)]
        t0 = time.perf_counter()
        await asyncio.sleep(duration / 4)
        ingest = await asyncio.create_subprocess_exec(
            *(["nice", "-n", str(nice)] if nice else []),
            sys.executable, "-m", "vidconcept", "ingest", str(SAMPLES), "--index", str(index), "-q", "--json",
            "--wait", "600", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        ingest_started = time.perf_counter()
        ingest_cpu = asyncio.create_task(_track_cpu(ingest.pid))
        await asyncio.sleep(duration / 4)
        shots = (await http.request("GET", "/api/search", params={"q": queries[0], "top": 6})).json()["results"]
        t_retrain = time.perf_counter()
        retrain = await http.request("POST", f"/api/concepts/{concept}/labels",
                                     json_body={"positive": [s["shot_id"] for s in shots[:3]],
                                                "negative": [s["shot_id"] for s in shots[3:]]})
        retrain_s = time.perf_counter() - t_retrain
        out, err = await ingest.communicate()
        ingest_s = time.perf_counter() - ingest_started
        ingest_cpu.cancel()
        await asyncio.sleep(max(0.0, duration - (time.perf_counter() - t0)))
        stop.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    finally:
        await http.aclose()
    summary = json.loads(out) if ingest.returncode in (0, 1) and out else {"stderr": err.decode()[-500:]}
    return {"endpoints": rec.summary(), "wall_s": round(wall, 1),
            "requests": sum(len(t) for t in rec.times.values()),
            "errors": sum(len(e) for e in rec.errors.values()),
            "ingest": {"returncode": ingest.returncode, "wall_s": round(ingest_s, 1), "nice": nice,
                       "cpu_s": _last_cpu.get(ingest.pid), "videos": summary.get("videos"),
                       "shots": summary.get("shots")},
            "retrain": {"status": retrain.status, "wall_s": round(retrain_s, 2)}}


_last_cpu: dict[int, float] = {}


async def _track_cpu(pid: int) -> None:
    """Remember a child's CPU seconds until it exits (``/proc`` forgets them once it is reaped)."""
    while True:
        cpu = _cpu_s(pid)
        if cpu is not None:
            _last_cpu[pid] = round(cpu, 1)
        await asyncio.sleep(0.2)


def _table(result: dict) -> str:
    lines = [f"{'endpoint':12} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    for kind, e in result["endpoints"].items():
        lines.append(f"{kind:12} {e['requests']:8d} {e['errors']:6d} " + " ".join(
            f"{e.get(k) if e.get(k) is not None else '-':>8}" for k in ("p50", "p95", "p99", "max")))
    i, r, c = result["ingest"], result["retrain"], result["cpu_s"]
    lines.append(f"{result['requests']} requests, {result['errors']} errors in {result['wall_s']} s; "
                 f"ingest {i['wall_s']} s (nice {i['nice']}, {i['videos']} videos, {i['shots']} shots, "
                 f"rc {i['returncode']}); retrain {r['wall_s']} s ({r['status']})")
    lines.append(f"CPU seconds: server {c['server']}, ingest {i['cpu_s']}, load generator {c['load_generator']} "
                 f"({result['client']}); {result['cpus']} CPUs; load average before {result['loadavg_before']}, "
                 f"after {result['loadavg_after']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (at least until the ingest ends)")
    parser.add_argument("--nice-ingest", type=int, default=0, metavar="N",
                        help="run the ingest under `nice -n N` (as a nightly cron job should; default 0: not niced)")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="HTTP client of the load generator: raw asyncio streams (default, cheap) or httpx")
    parser.add_argument("--uncached-search", action="store_true",
                        help="give each search its own min_score (below every score), so that no search is "
                             "answered from the server's cache of result pages: the cost of the search itself")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    loadavg_before = _loadavg()
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
            server_cpu0, own_cpu0 = _cpu_s(server.pid), time.process_time()
            result = asyncio.run(_run(base, secret, args.clients, args.duration, index, "bench", args.nice_ingest,
                                      args.client, args.uncached_search))
            server_cpu = _cpu_s(server.pid)
            own_cpu = time.process_time() - own_cpu0
        finally:
            server.terminate()
            server.wait(30)
    cpu = {"server": round(server_cpu - server_cpu0, 1) if server_cpu is not None else None,
           "load_generator": round(own_cpu, 1)}
    result = {"clients": args.clients, "duration_s": args.duration, "client": args.client,
              "uncached_search": args.uncached_search, "cpus": os.cpu_count(),
              "loadavg_before": loadavg_before, "loadavg_after": _loadavg(), **result, "cpu_s": cpu}
    text = json.dumps(result, indent=2)
    print(text if args.json else _table(result))
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

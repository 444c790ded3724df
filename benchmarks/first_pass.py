"""The decoder alone, as the shot scanner sets it up: how many threads, which frames.

Decodes VIDEO to nowhere with PyAV as :class:`~vidconcept.video.decode.FrameReader` opens
it (no deblocking; slice or frame threads as ``thread_type`` says), every frame
(``DEFAULT``) and reference frames only (``NONREF``, the skim's first pass), with the
thread count ``slice_threads`` chooses, FFmpeg's own (``0``: cores + 1 for slice threads)
and one, alternating; prints the best CPU and wall seconds of each.

    python benchmarks/first_pass.py runs/bench/test720p.mp4 [--repeat 2] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vidconcept.video.decode import read_head, slice_threads, thread_type  # noqa: E402


def decode(path: Path, kind: str, count: int, skip: str) -> tuple[int, float, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.thread_count = kind, count
        ctx = stream.codec_context
        ctx.options = {**ctx.options, "skip_loop_filter": "all"}
        ctx.skip_frame = skip
        cpu, wall, frames = time.process_time(), time.perf_counter(), 0
        for packet in container.demux(stream):
            frames += len(ctx.decode(packet))
        return frames, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    head = read_head(args.video)
    kind, chosen = thread_type(head), slice_threads(head)
    counts = {"chosen": chosen, "ffmpeg_default": 0, "one": 1}
    best: dict[str, tuple[int, float, float]] = {}
    for _ in range(args.repeat):
        for skip in ("NONREF", "DEFAULT"):
            for name, count in counts.items():
                key = f"{skip.lower()}_{name}"
                got = decode(args.video, kind, count, skip)
                best[key] = min(best.get(key, got), got, key=lambda r: r[1])
    out = {"video": str(args.video), "thread_type": kind, "chosen_threads": chosen, "slices": head.slices if head else None,
           **{k: {"frames": f, "cpu_s": round(c, 2), "wall_s": round(w, 2)} for k, (f, c, w) in best.items()}}
    print(json.dumps(out, indent=None if args.json else 2))


if __name__ == "__main__":
    main()

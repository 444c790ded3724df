"""CPU inference of a bundle: keyframes per second and score differences per precision, per ISA.

``ConceptModel`` picks its CPU precision at load (vidconcept.model.cpu: bf16 only where the CPU
has it natively), runs a batch in chunks of about ``CPU_CHUNK_PIXELS`` input pixels
(vidconcept.model.concept_model), fuses each convolution with its activation where the
load-time check finds that exact, and pads "same" convolutions at the border only
(vidconcept.model.fused, efficientnet_lite.pad_zeros). This times ``predict`` on real pictures
(scikit-image's sample photos at 512x288, as ingest's keyframes of 16:9 video are), in CPU
time on one thread, alternating these ways:

  * ``fp32`` / ``bf16``: that precision, convolution then activation, padding by ``F.pad``;
  * ``fp32_fused`` / ``bf16_fused``: that precision, fused where the load-time check allows;
  * ``chosen``: as ingest runs it on this CPU (precision and fusion chosen at load);
  * ``chosen_one_piece``: as ``chosen``, but the whole batch in one piece (no chunks);

and reports each one's keyframes per second and its scores' largest difference from ``fp32``.
``bf16`` is n/a where oneDNN has no bf16 convolution (below AVX-512). ``--isa`` runs the whole
measurement once per oneDNN ISA limit (``ONEDNN_MAX_CPU_ISA``, in a fresh process each) and
prints a Markdown table (docs/speed.md):

    python benchmarks/model_speed.py [--model DIR] [--images 32] [--threads 1] [--repeat 3] [--json]
    python benchmarks/model_speed.py --isa AVX2,AVX512_CORE,AVX512_CORE_BF16
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import cv2
import numpy as np
import skimage.data
import torch
from torch.nn import functional as F

import vidconcept.model.concept_model as concept_model
from vidconcept.errors import ModelError
from vidconcept.model import ConceptModel, cpu, efficientnet_lite, fused

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
WAYS = ("fp32", "fp32_fused", "bf16", "bf16_fused", "chosen", "chosen_one_piece")


def pictures(n: int) -> list[np.ndarray]:
    base = [cv2.resize(getattr(skimage.data, name)(), (512, 288), interpolation=cv2.INTER_AREA) for name in PHOTOS]
    return [np.ascontiguousarray(np.roll(base[i % len(base)], 37 * i, axis=1)) for i in range(n)]


@contextlib.contextmanager
def unfused():
    """Load or run a model as before the fusion: no fused layers, padding by ``F.pad``."""
    available, pad = fused.available, efficientnet_lite.pad_zeros
    fused.available = lambda: False
    efficientnet_lite.pad_zeros = lambda x, left, right, top, bottom: F.pad(x, [left, right, top, bottom])
    try:
        yield
    finally:
        fused.available, efficientnet_lite.pad_zeros = available, pad


def cpu_name() -> str:
    """The CPU's model name and its bf16 hardware, as /proc/cpuinfo says."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    has = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({os.cpu_count()} cores; {', '.join(has) or 'no AVX2'})"


def load_ways(model: str | None) -> dict[str, tuple[ConceptModel, bool, int]]:
    """``way -> (model, run unfused, chunk pixels)`` for the ways this ISA can run."""
    chunked, ways = concept_model.CPU_CHUNK_PIXELS, {}
    for precision in ("fp32", "bf16"):
        for fuse in (False, True):
            with contextlib.nullcontext() if fuse else unfused():
                try:
                    m = ConceptModel.load(model, device="cpu", cpu_precision=precision)
                except ModelError:  # no bf16 convolution at this ISA
                    continue
            ways[precision + ("_fused" if fuse else "")] = (m, not fuse, chunked)
    chosen = ConceptModel.load(model, device="cpu")
    ways["chosen"], ways["chosen_one_piece"] = (chosen, False, chunked), (chosen, False, 1 << 40)
    return ways


def measure(args) -> dict:
    torch.set_num_threads(args.threads)
    ways, images = load_ways(args.model), pictures(args.images)
    times: dict[str, list[float]] = {k: [] for k in ways}
    outputs = {}
    ways["chosen"][0].predict(images[:4], batch_size=args.batch)  # warm-up
    chunked = concept_model.CPU_CHUNK_PIXELS
    for _ in range(args.repeat):
        for name, (m, plain, pixels) in ways.items():
            concept_model.CPU_CHUNK_PIXELS = pixels
            with unfused() if plain else contextlib.nullcontext():
                start = time.process_time()
                outputs[name] = m.predict(images, batch_size=args.batch)
                times[name].append(time.process_time() - start)
    concept_model.CPU_CHUNK_PIXELS = chunked
    chosen, ref = ways["chosen"][0], outputs["fp32"]
    return {"model": chosen.name, "cpu": cpu_name(), "isa_limit": cpu.isa_limit(), "torch": torch.__version__,
            "images": len(images), "batch": args.batch, "threads": args.threads, "chunk_pixels": chunked,
            "chosen": chosen.runtime,
            **{f"{k}_fused_layers": m.runtime["fused_layers"] for k, (m, _, _) in ways.items()},
            **{f"{k}_keyframes_per_cpu_s": round(len(images) / statistics.median(v), 2) for k, v in times.items()},
            **{f"{k}_all_cpu_s": [round(t, 2) for t in v] for k, v in times.items()},
            **{f"max_score_difference_{k}": float(np.abs(ref.scores - o.scores).max()) for k, o in outputs.items()},
            **{f"max_feature_difference_{k}": float(np.abs(ref.features - o.features).max()) for k, o in outputs.items()}}


def per_isa(args) -> list[dict]:
    """:func:`measure` once per ISA limit, each in a fresh process (oneDNN reads the limit once)."""
    rows = []
    for isa in args.isa.split(","):
        cmd = [sys.executable, __file__, "--json", "--images", str(args.images), "--batch", str(args.batch),
               "--threads", str(args.threads), "--repeat", str(args.repeat)] + (["--model", args.model] if args.model else [])
        out = subprocess.run(cmd, env={**os.environ, "ONEDNN_MAX_CPU_ISA": isa}, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: keyframes per CPU-second (largest score difference from fp32; fused layers) per way and ISA."""
    head = "| ONEDNN_MAX_CPU_ISA | " + " | ".join(WAYS) + " | chosen at load |"
    lines = [head, "|" + "---|" * (len(WAYS) + 2)]
    for r in rows:
        cells = [f"{r[f'{w}_keyframes_per_cpu_s']:.1f} ({r[f'max_score_difference_{w}']:.4f}; "
                 f"{r[f'{w}_fused_layers']} fused)" if f"{w}_keyframes_per_cpu_s" in r else "n/a" for w in WAYS]
        chosen = r["chosen"]
        lines.append(f"| {r['isa_limit'] or '(none)'} | " + " | ".join(cells) +
                     f" | {chosen['precision']}, {chosen['fused_layers']} fused |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="bundle folder (default: the shipped model)")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (ingest uses cores - 1)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--isa", default=None, help="comma-separated ONEDNN_MAX_CPU_ISA levels: one run each, a table")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.isa:
        rows = per_isa(args)
        print(json.dumps(rows) if args.json else f"{rows[0]['cpu']}, torch {rows[0]['torch']}, model {rows[0]['model']}, "
              f"{rows[0]['images']} keyframes 512x288, {rows[0]['threads']} thread(s)\n\n" + table(rows))
        return
    out = measure(args)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()

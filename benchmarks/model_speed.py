"""CPU inference of a bundle as shipped, against the two things that make it fast.

``ConceptModel`` runs a CPU batch through the network in chunks of about
``CPU_CHUNK_PIXELS`` input pixels (vidconcept.model.concept_model), with each convolution
and its activation fused into one oneDNN call and "same" padding that zeroes only the
border (vidconcept.model.fused, efficientnet_lite.pad_zeros). This times ``predict`` on real
pictures (scikit-image's sample photos at 512x288, as ingest's keyframes of 16:9 video are),
alternating, three ways:

  * ``shipped``: as ingest runs it;
  * ``unfused``: convolution, then activation; padding by ``F.pad`` (before both changes);
  * ``one_piece``: as shipped, but the whole batch in one piece (no chunks);

and checks that the scores and features of all three are the same.

    python benchmarks/model_speed.py [--model DIR] [--images 64] [--threads 1] [--repeat 3] [--json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import cv2
import numpy as np
import skimage.data
import torch
from torch.nn import functional as F

import vidconcept.model.concept_model as concept_model
from vidconcept.model import ConceptModel, efficientnet_lite, fused

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="bundle folder (default: the shipped model)")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (ingest uses cores - 1)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = ConceptModel.load(args.model, device="cpu")
    with unfused():
        plain = ConceptModel.load(args.model, device="cpu")
    images = pictures(args.images)
    chunked = concept_model.CPU_CHUNK_PIXELS
    ways = {"shipped": (model, chunked), "unfused": (plain, chunked), "one_piece": (model, 1 << 40)}
    times: dict[str, list[float]] = {k: [] for k in ways}
    outputs = {}
    model.predict(images[:4], batch_size=args.batch)  # warm-up
    for _ in range(args.repeat):
        for name, (m, pixels) in ways.items():
            concept_model.CPU_CHUNK_PIXELS = pixels
            with unfused() if m is plain else contextlib.nullcontext():
                start = time.process_time()
                outputs[name] = m.predict(images, batch_size=args.batch)
                times[name].append((time.process_time() - start) / len(images) * 1000)
    concept_model.CPU_CHUNK_PIXELS = chunked
    a = outputs["shipped"]
    out = {"model": model.name, "input": model.data_config["input_size"], "images": len(images),
           "batch": args.batch, "threads": args.threads, "chunk_pixels": chunked,
           "fused_layers": sum(isinstance(m, fused.ConvAct) for m in model._runner.modules()),
           **{f"{k}_cpu_ms_per_image": round(statistics.median(v), 1) for k, v in times.items()},
           **{f"{k}_all_ms": [round(t, 1) for t in v] for k, v in times.items()},
           **{f"max_score_difference_{k}": float(np.abs(a.scores - outputs[k].scores).max()) for k in ways},
           **{f"max_feature_difference_{k}": float(np.abs(a.features - outputs[k].features).max()) for k in ways}}
    for k in ("unfused", "one_piece"):
        out[f"speedup_vs_{k}"] = round(out[f"{k}_cpu_ms_per_image"] / out["shipped_cpu_ms_per_image"], 2)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()

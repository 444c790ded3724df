"""CPU inference of a bundle: batches of 32 run in cache-sized chunks against one piece.

``ConceptModel`` runs a CPU batch through the network in chunks of about
``CPU_CHUNK_PIXELS`` input pixels (vidconcept.model.concept_model). This times
``predict`` on real pictures (scikit-image's sample photos at 512x288, as ingest's
keyframes of 16:9 video are) with the chunks and with the whole batch in one piece, alternating, and
checks the scores and features are the same.

    python benchmarks/model_speed.py [--model DIR] [--images 64] [--threads 1] [--repeat 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import cv2
import numpy as np
import skimage.data
import torch

import vidconcept.model.concept_model as concept_model
from vidconcept.model import ConceptModel

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def pictures(n: int) -> list[np.ndarray]:
    base = [cv2.resize(getattr(skimage.data, name)(), (512, 288), interpolation=cv2.INTER_AREA) for name in PHOTOS]
    return [np.ascontiguousarray(np.roll(base[i % len(base)], 37 * i, axis=1)) for i in range(n)]


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
    images = pictures(args.images)
    chunked = concept_model.CPU_CHUNK_PIXELS
    ways = {"chunks": chunked, "one_piece": 1 << 40}
    times: dict[str, list[float]] = {k: [] for k in ways}
    outputs = {}
    model.predict(images[:4], batch_size=args.batch)  # warm-up
    for _ in range(args.repeat):
        for name, pixels in ways.items():
            concept_model.CPU_CHUNK_PIXELS = pixels
            start = time.process_time()
            outputs[name] = model.predict(images, batch_size=args.batch)
            times[name].append((time.process_time() - start) / len(images) * 1000)
    concept_model.CPU_CHUNK_PIXELS = chunked
    a, b = outputs["chunks"], outputs["one_piece"]
    out = {"model": model.name, "input": model.data_config["input_size"], "images": len(images),
           "batch": args.batch, "threads": args.threads, "chunk_pixels": chunked,
           **{f"{k}_cpu_ms_per_image": round(statistics.median(v), 1) for k, v in times.items()},
           **{f"{k}_all_ms": [round(t, 1) for t in v] for k, v in times.items()},
           "max_score_difference": float(np.abs(a.scores - b.scores).max()),
           "max_feature_difference": float(np.abs(a.features - b.features).max())}
    out["speedup"] = round(out["one_piece_cpu_ms_per_image"] / out["chunks_cpu_ms_per_image"], 2)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()

"""The concept model on CUDA against the CPU: same scores, and keyframes per second on each.

Needs only torch, timm, scikit-image and a bundle with its weights (so it runs on a GPU
machine that lacks the video and index packages). Prints one JSON object.

    python benchmarks/gpu_model_check.py --model models/default --json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def keyframes(n: int) -> list[np.ndarray]:
    """``n`` real 720p-sized RGB frames (scikit-image photos, resized and shifted)."""
    import skimage.data
    from PIL import Image

    photos = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.astronaut(), skimage.data.rocket()]
    frames = [np.asarray(Image.fromarray(p).resize((1280, 720))) for p in photos]
    return [np.roll(frames[i % len(frames)], 7 * i, axis=1) for i in range(n)]


def throughput(model, frames: list[np.ndarray], batch: int, repeat: int) -> float:
    model.predict(frames[:batch], batch_size=batch)  # warm-up: cuDNN autotuning, allocator
    if model.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeat):
        for s in range(0, len(frames), batch):
            model.predict(frames[s:s + batch], batch_size=batch)
    return repeat * len(frames) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="bundle folder (default: the configured model)")
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from vidconcept.model import ConceptModel

    frames = keyframes(args.frames)
    cpu = ConceptModel.load(args.model, device="cpu")
    result: dict = {"model": cpu.name, "cuda": torch.cuda.is_available(), "torch": torch.__version__,
                    "cpu_threads": torch.get_num_threads(),
                    "cpu_frames_per_s": round(throughput(cpu, frames[:args.batch], args.batch, 1), 1)}
    if torch.cuda.is_available():
        gpu = ConceptModel.load(args.model, device="cuda")
        a, b = cpu.predict(frames[:16]), gpu.predict(frames[:16])
        result.update({
            "gpu": torch.cuda.get_device_name(0),
            "max_abs_score_diff": float(np.abs(a.scores - b.scores).max()),
            "top1_agree": float((a.scores.argmax(1) == b.scores.argmax(1)).mean()),
            "min_feature_cosine": float(np.sum(a.features * b.features, axis=1).min()),
            "gpu_frames_per_s": round(throughput(gpu, frames, args.batch, 3), 1),
        })
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()

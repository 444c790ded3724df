"""Training throughput of a concept network on this machine, per precision, crop size and frozen depth.

Times full SGD steps (forward, masked BCE, backward, update) of a backbone (default
``tf_efficientnet_lite0``) + ft3-ex1-512 on random batches, as :class:`vidconcept.model.train.Trainer` runs them
(channels-last, the same autocast), so data loading is not included. ``--cache-stages K``
runs the first K stages without gradients, as cached training would skip them entirely.
Prints one JSON object: photos per second for each setting.

    .venv/bin/python benchmarks/train_speed.py --sizes 224,288 --json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from vidconcept.model.backbones import create_backbone
from vidconcept.model.strategies import parse_strategy
from vidconcept.model.train import autocast_dtype, masked_bce


def steps_per_second(net, size: int, batch: int, dtype, start: int, steps: int) -> float:
    device_type = "cuda" if next(net.parameters()).is_cuda else "cpu"
    x = torch.randn(batch, 3, size, size, device=device_type).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 2, (batch, net.concept_layer.out_features), device=device_type).float()
    mask = torch.ones_like(labels)
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-6, momentum=0.9)
    times = []
    for _ in range(steps + 1):  # the first step warms up oneDNN / cuDNN
        began = time.perf_counter()
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            h = x
            if start:
                with torch.no_grad():
                    h = net.backbone.forward_stages(x, 0, start)
            loss = masked_bce(net(h, start=start).float(), labels, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device_type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return batch / min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--sizes", default="224,288", help="square crop sizes")
    parser.add_argument("--cache-stages", default="0", help="comma-separated K values (0: full fine-tuning)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    net = parse_strategy("ft3-ex1-512").build(create_backbone(args.backbone, "none"), 38)
    net = net.to(args.device, memory_format=torch.channels_last).train()
    result = {"backbone": args.backbone, "device": args.device, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
              "machine": platform.machine(), "torch": torch.__version__, "batch_size": args.batch_size,
              "photos_per_s": {}}
    for precision in ("fp32", "auto"):
        dtype = autocast_dtype(args.device, precision)
        name = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
        if precision == "auto" and dtype is None:
            continue  # no mixed precision here: already measured as fp32
        for k in (int(v) for v in args.cache_stages.split(",")):
            for i, stage in enumerate(net.backbone.stages.values()):
                stage.requires_grad_(i >= k)
            for size in (int(v) for v in args.sizes.split(",")):
                rate = steps_per_second(net, size, args.batch_size, dtype, k, args.steps)
                result["photos_per_s"][f"{name} {size}px K={k}"] = round(rate, 1)
                if not args.json:
                    print(f"{name:5} {size}px K={k}: {rate:.1f} photos/s", flush=True)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()

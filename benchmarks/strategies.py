"""Replicate Pittaras et al. (MMM 2017)'s comparison on PASCAL VOC 2007 train → val.

Every run fine-tunes the same ImageNet backbone with one strategy, the same seed and the
same budget, then scores the val images two ways: ``direct`` (the concept layer's sigmoid)
and ``fused`` (one logistic regression per concept on each of the last three layers,
averaged), and reports MAP. Runs:

* strategies at k = 0.1 and ``--epochs`` epochs: ft1-def, ft2-re1, ft2-re2,
  ft3-ex1-{64,128,512,1024,2048}, ft3-ex2-{64,512};
* ``--grid``: ft1-def for k ∈ {0.05, 0.1, 0.25, 1.0} × e ∈ ``--grid-epochs``.

Each finished run is appended to ``OUT/runs.jsonl`` at once (a killed job keeps what it
did; a rerun skips runs already there). ``--report`` turns that file into
``docs/strategies.md`` (table) and ``docs/strategies.png`` (chart).

    python benchmarks/strategies.py --voc ../shared/data/voc2007 --out runs/strategies --grid
    python benchmarks/strategies.py --out runs/strategies --report
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DOCS = Path(__file__).resolve().parents[1] / "docs"
STRATEGIES = ["ft1-def", "ft2-re1", "ft2-re2", "ft3-ex1-64", "ft3-ex1-128", "ft3-ex1-512", "ft3-ex1-1024",
              "ft3-ex1-2048", "ft3-ex2-64", "ft3-ex2-512"]
GRID_K = [0.05, 0.1, 0.25, 1.0]


def run_key(strategy: str, k: float, epochs: int) -> str:
    return f"{strategy}|k={k:g}|e={epochs}"


def run_one(args, strategy: str, k: float, epochs: int) -> dict:
    """Fine-tune on train, score val by the direct output and by fused LR detectors."""
    import torch

    from vidconcept.config import resolve_device
    from vidconcept.data import open_dataset
    from vidconcept.metrics.ap import metric_table
    from vidconcept.model.detectors import fit_layer, fuse
    from vidconcept.model.train import TrainConfig, Trainer

    spec = f"voc:{args.voc}"
    train, val = open_dataset(spec, "train"), open_dataset(spec, "val")
    if args.limit:
        train, val = train.subset(np.arange(args.limit)), val.subset(np.arange(args.limit))
    cfg = TrainConfig(args.backbone, strategy, [spec], epochs, k, args.batch_size, args.lr, args.image_size,
                      args.seed, "train", args.cache_stages, args.workers, args.weights)
    started = time.perf_counter()
    trainer = Trainer(cfg, train, args.scratch or Path(args.out) / "scratch", resolve_device(args.device))
    trainer.fit()
    train_s = time.perf_counter() - started
    train_out, val_out = trainer.layer_outputs(), trainer.layer_outputs(val)
    layers = trainer.net.lr_layers
    probs = [fit_layer(n, train_out[n], train.labels, train.mask, args.seed).predict(val_out[n]) for n in layers]
    direct = 1.0 / (1.0 + np.exp(-val_out["logits"].astype(np.float64)))
    result = {"key": run_key(strategy, k, epochs), "strategy": strategy, "k": k, "epochs": epochs,
              "backbone": args.backbone, "image_size": args.image_size or trainer.data_config["input_size"][-1],
              "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "cache_stages": args.cache_stages,
              "train_images": len(train), "val_images": len(val), "loss": trainer.losses,
              "device": torch.cuda.get_device_name(0) if trainer.device.startswith("cuda") else "cpu",
              "train_s": round(train_s, 1), "total_s": round(time.perf_counter() - started, 1)}
    for name, scores in [("direct", direct), ("fused", fuse(probs))] + [(f"lr:{n}", p) for n, p in zip(layers, probs)]:
        result[name] = metric_table("ap", scores, val.labels, val.mask, val.concepts)["map"]
    return result


def planned_runs(args) -> list[tuple[str, float, int]]:
    runs = [(s, 0.1, args.epochs) for s in STRATEGIES if not args.only or s in args.only]
    if args.grid:
        runs += [("ft1-def", k, e) for k in GRID_K for e in args.grid_epochs if (k, e) != (0.1, args.epochs)]
    return runs


def read_runs(out: Path) -> list[dict]:
    path = out / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def report(out: Path, docs: Path, note: str = "") -> None:
    """Markdown table and PNG chart of ``runs.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = read_runs(out)
    if not runs:
        raise SystemExit(f"no runs in {out / 'runs.jsonl'}")
    first = runs[0]
    budget = (f"{first['backbone']}, {first['image_size']} px, batch {first['batch_size']}, lr {first['lr']} "
              f"(SGD, Nesterov, one-cycle), seed {first['seed']}, cached stages {first['cache_stages']}, "
              f"VOC 2007 train ({first['train_images']} images) → val ({first['val_images']} images), "
              f"on {first['device']}")
    main = [r for r in runs if r["k"] == 0.1 and r["epochs"] == max(x["epochs"] for x in runs if x["k"] == 0.1)]
    lines = ["# Fine-tuning strategies on PASCAL VOC 2007 (train → val)", "",
             f"Budget, the same for every run: {budget}.", *([note] if note else []), "",
             f"Made by `{first.get('command', 'benchmarks/strategies.py')}`, then "
             f"`python benchmarks/strategies.py --out {out} --report`.", "",
             f"## Strategies (k = 0.1, {main[0]['epochs']} epochs)", "",
             "| strategy | direct MAP | fused MAP | LR per layer (MAP) | train s |", "|---|---|---|---|---|"]
    for r in sorted(main, key=lambda r: STRATEGIES.index(r["strategy"]) if r["strategy"] in STRATEGIES else 99):
        per_layer = ", ".join(f"{k[3:]} {v:.3f}" for k, v in r.items() if k.startswith("lr:"))
        lines.append(f"| {r['strategy']} | {r['direct']:.3f} | {r['fused']:.3f} | {per_layer} | {r['train_s']} |")
    grid = [r for r in runs if r["strategy"] == "ft1-def"]
    ks, es = sorted({r["k"] for r in grid}), sorted({r["epochs"] for r in grid})
    if len(ks) > 1 or len(es) > 1:
        cell = {(r["k"], r["epochs"]): r for r in grid}
        lines += ["", "## ft1-def: learning-rate multiplier k × epochs e (direct / fused MAP)", "",
                  "| k \\ e | " + " | ".join(str(e) for e in es) + " |", "|---" * (len(es) + 1) + "|"]
        for k in ks:
            row = [f"{cell[k, e]['direct']:.3f} / {cell[k, e]['fused']:.3f}" if (k, e) in cell else "–" for e in es]
            lines.append(f"| {k:g} | " + " | ".join(row) + " |")
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "strategies.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    names = [r["strategy"] for r in sorted(main, key=lambda r: STRATEGIES.index(r["strategy"]))]
    by_name = {r["strategy"]: r for r in main}
    pos = np.arange(len(names))
    axes[0].bar(pos - 0.2, [by_name[n]["direct"] for n in names], 0.4, label="direct")
    axes[0].bar(pos + 0.2, [by_name[n]["fused"] for n in names], 0.4, label="fused LR")
    axes[0].set_xticks(pos, names, rotation=35, ha="right")
    low = min(min(by_name[n]["direct"], by_name[n]["fused"]) for n in names)
    axes[0].set_ylim(max(0.0, low - 0.03), 1.0)
    axes[0].set_ylabel("MAP, VOC 2007 val")
    axes[0].set_title(f"strategies (k = 0.1, {main[0]['epochs']} epochs)")
    axes[0].legend(loc="upper left")
    if len(ks) > 1 or len(es) > 1:
        for k in ks:
            pts = sorted((r["epochs"], r["fused"]) for r in grid if r["k"] == k)
            axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"k = {k:g}")
        axes[1].set_xlabel("epochs")
        axes[1].set_ylabel("fused MAP")
        axes[1].set_title("ft1-def: k × epochs")
        axes[1].legend()
    else:
        axes[1].axis("off")
    fig.tight_layout()
    fig.savefig(docs / "strategies.png", dpi=110)
    print(f"wrote {docs / 'strategies.md'} and {docs / 'strategies.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voc", type=Path, default=SHARED / "voc2007", help="VOC 2007 root (VOC layout)")
    parser.add_argument("--out", type=Path, default=Path("runs/strategies"))
    parser.add_argument("--scratch", type=Path, default=None, help="checkpoints (default: OUT/scratch)")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--weights", default="pretrained", help="'pretrained' or a timm-layout state_dict file")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--grid", action="store_true", help="also run the ft1-def k × e grid")
    parser.add_argument("--grid-epochs", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--only", nargs="+", help="strategies to run (default: all)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--cache-stages", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="first N images of each split (smoke runs)")
    parser.add_argument("--report", action="store_true", help="only write docs/strategies.{md,png} from OUT")
    parser.add_argument("--docs", type=Path, default=DOCS)
    parser.add_argument("--note", default="", help="a sentence for the report (e.g. how the photos travelled)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.report:
        report(args.out, args.docs, args.note)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    done = {r["key"] for r in read_runs(args.out)}
    command = shlex.join(["python", *sys.argv])
    for strategy, k, epochs in planned_runs(args):
        if run_key(strategy, k, epochs) in done:
            continue
        result = {**run_one(args, strategy, k, epochs), "command": command}
        with open(args.out / "runs.jsonl", "a") as f:
            f.write(json.dumps(result) + "\n")
        print(json.dumps({k: result[k] for k in ("key", "direct", "fused", "total_s")}), flush=True)


if __name__ == "__main__":
    main()

"""Train the default concept model (issue 4) and record its metrics in the bundle.

Concept pool: 20 VOC 2007 classes (train) + intel_scenes/train + scene15/train scenes
(same name = one concept). Evaluated on voc2007 val, scene15 test and intel_scenes test;
each result is stored with the exact command in the bundle's config.json and MODEL.md.

Usage (from the repository root, logs under runs/)::

    nohup nice -n 19 .venv/bin/python benchmarks/strategies_default.py --out runs/default-ft3 \
        > runs/default-ft3.log 2>&1 &
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def train_specs(root: Path) -> list[str]:
    return [f"voc:{root / 'voc2007'}", f"folder:{root / 'intel_scenes'}", f"folder:{root / 'scene15'}"]


def repeat_specs(root: Path, repeat: list[str]) -> dict[str, int]:
    """``["scene15=3"]`` → ``{"folder:ROOT/scene15": 3}``."""
    specs = {Path(spec.partition(":")[2]).name: spec for spec in train_specs(root)}
    out = {}
    for item in repeat:
        name, _, times = item.partition("=")
        if name not in specs or not times.isdigit():
            raise SystemExit(f"--repeat: expected SET=N with SET one of {', '.join(specs)}, got {item!r}")
        out[specs[name]] = int(times)
    return out


def eval_specs(root: Path) -> list[tuple[str, str]]:
    return [(f"voc:{root / 'voc2007'}", "val"), (f"folder:{root / 'scene15'}", "test"),
            (f"folder:{root / 'intel_scenes'}", "test")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/default-ft3"))
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--strategy", default="ft3-ex1-512")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--lr-mult", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--train-size", type=int, default=None, help="random training crop size")
    parser.add_argument("--precision", choices=["auto", "fp32"], default="auto")
    parser.add_argument("--cache-stages", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop-pct", type=float, default=None, help="inference centre crop (1.0: whole shorter side)")
    parser.add_argument("--crop-mode", choices=["center", "none"], help="inference crop (none: the whole image)")
    parser.add_argument("--init", help="start from this fine-tuned bundle (same backbone, strategy, concepts)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--weights", default="pretrained", help="'pretrained' or a timm-layout state_dict file")
    parser.add_argument("--data", type=Path, default=SHARED, help="folder with voc2007/, intel_scenes/, scene15/")
    parser.add_argument("--eval-data", type=Path, default=SHARED, help="the same, for evaluation")
    parser.add_argument("--no-eval", action="store_true", help="train only (e.g. on a machine without the test sets)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("--repeat", nargs="*", default=[], metavar="SET=N",
                        help="a training set's photos (voc2007, intel_scenes, scene15) appear N times an epoch")
    parser.add_argument("--detector-c", default=None, metavar="C|cv",
                        help="LR detectors' C (default 1) or 'cv': each layer's by cross-validation (models/default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from vidconcept.evaluate import evaluate
    from vidconcept.model.card import record_metrics
    from vidconcept.model.train import train

    command = shlex.join([".venv/bin/python", *sys.argv])
    if not args.eval_only:
        train(args.backbone, args.strategy, train_specs(args.data), args.out, epochs=args.epochs,
              lr_mult=args.lr_mult, batch_size=args.batch_size, lr=args.lr, image_size=args.image_size,
              seed=args.seed, resume=args.resume, cache_stages=args.cache_stages, workers=args.workers,
              weights=args.weights, crop_pct=args.crop_pct, crop_mode=args.crop_mode, init=args.init,
              train_size=args.train_size, precision=args.precision,
              repeat=repeat_specs(args.data, args.repeat), detector_c=args.detector_c)
    for spec, split in [] if args.no_eval else eval_specs(args.eval_data):
        report = evaluate(args.out, spec, split)
        record_metrics(args.out, report, command)
        print(json.dumps({"dataset": spec, "split": split,
                          **{k: v["map"] for k, v in report["outputs"].items()}}), flush=True)


if __name__ == "__main__":
    main()

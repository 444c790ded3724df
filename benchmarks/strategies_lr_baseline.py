"""Baseline: LR detectors on frozen ImageNet pre-logits features, for several regularisation strengths.

Usage: ``.venv/bin/python benchmarks/strategies_lr_baseline.py folder:../shared/data/scene15 train test [backbone]``
(backbone defaults to ``tf_efficientnet_lite0``).
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from vidconcept.data import open_dataset
from vidconcept.metrics.ap import metric_table
from vidconcept.model import create_backbone
from vidconcept.model.concept_model import eval_transform
from vidconcept.model import detectors


@torch.inference_mode()
def features(net, data, batch_size: int = 64) -> np.ndarray:
    transform = eval_transform(net.data_config)
    parts = []
    for start in range(0, len(data), batch_size):
        x = torch.stack([transform(data.load_image(i)) for i in range(start, min(start + batch_size, len(data)))])
        parts.append(net.features(x).numpy())
    return np.concatenate(parts)


def main(spec: str, train_split: str, test_split: str, backbone: str = "tf_efficientnet_lite0") -> None:
    net = create_backbone(backbone).eval()
    train, test = open_dataset(spec, train_split), open_dataset(spec, test_split)
    x_train, x_test = features(net, train), features(net, test)
    cols = [train.concepts.index(c) for c in test.concepts]
    for c in (0.01, 0.1, 1.0):
        det = detectors.fit_layer("features", x_train, train.labels, train.mask, c=c)
        scores = det.predict(x_test)[:, cols]
        table = metric_table("ap", scores, test.labels, test.mask, test.concepts)
        print(f"{backbone} {spec} C={c}: MAP {table['map']:.4f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])

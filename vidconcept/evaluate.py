"""Evaluation of a concept model on a labelled data set: AP / MAP per output, or inferred AP.

The metrics themselves are in :mod:`vidconcept.metrics.ap` (re-exported here).

Example::

    from vidconcept.evaluate import evaluate
    report = evaluate("models/default", "voc:../shared/data/voc2007", split="val")
    report["outputs"]["fused"]["map"]
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vidconcept.errors import UsageError
from vidconcept.metrics.ap import (  # noqa: F401 (re-exported: the metrics' public home was here)
    METRICS,
    average_precision,
    concept_metric,
    inferred_average_precision,
    metric_table,
)

log = logging.getLogger(__name__)


def evaluate(model_dir: str | Path | None, dataset_spec: str, split: str = "test", metric: str = "ap",
             batch_size: int = 32, device: str | None = None, limit: int | None = None) -> dict:
    """Score a data set with a bundle and report AP/MAP per output over shared concepts.

    Returns:
        ``{"dataset", "split", "metric", "images", "concepts", "outputs": {"direct": {"map", "ap"},
        "fused": …, "lr:<layer>": …}}``; only concepts both the model and the data set know
        (after lower-casing) are scored.
    """
    from tqdm.auto import tqdm

    from vidconcept.data import open_dataset
    from vidconcept.model import ConceptModel

    model = ConceptModel.load(model_dir, device=device)
    data = open_dataset(dataset_spec, split)
    if limit:
        data = data.subset(np.arange(min(limit, len(data))))
    shared = [c for c in data.concepts if c in set(model.concepts)]
    if not shared:
        raise UsageError(f"model {model.name!r} and data set {dataset_spec!r} share no concept")
    outputs: dict[str, list[np.ndarray]] = {}
    for start in tqdm(range(0, len(data), batch_size), desc=f"evaluate {dataset_spec}", unit="batch"):
        images = [data.load_image(i) for i in range(start, min(start + batch_size, len(data)))]
        for kind, scores in model.score_outputs(model.layer_outputs(images)).items():
            outputs.setdefault(kind, []).append(scores)
    model_cols = [model.concepts.index(c) for c in shared]
    data_cols = [data.concepts.index(c) for c in shared]
    labels, mask = data.labels[:, data_cols], data.mask[:, data_cols]
    report = {"dataset": dataset_spec, "split": split, "metric": metric, "images": len(data), "concepts": shared,
              "outputs": {}}
    for kind, parts in outputs.items():
        scores = np.concatenate(parts)[:, model_cols]
        report["outputs"][kind] = metric_table(metric, scores, labels, mask, shared, data.strata, data.inclusion)
    return report

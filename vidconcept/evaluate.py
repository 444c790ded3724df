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
             batch_size: int = 32, device: str | None = None, limit: int | None = None,
             cache: str | Path | None = None) -> dict:
    """Score a data set with a bundle and report AP/MAP per output over shared concepts.

    Returns:
        ``{"dataset", "split", "metric", "images", "concepts", "aliases", "outputs": {"direct": {"map", "ap",
        "ece"}, "fused": …, "lr:<layer>": …}}``; only concepts both the model and the data set know
        are scored, each under the model's own name (a data set's ``living_room`` is the model's
        ``livingroom``: :func:`vidconcept.model.names.resolve` with the bundle's aliases; ``aliases``
        lists those renamed). ``cache``: a folder keeping the data set's layer outputs
        (:mod:`vidconcept.model.outputs_cache`), so detectors refitted on one network are
        measured without running it again.
    """
    from vidconcept.data import open_dataset
    from vidconcept.model import ConceptModel
    from vidconcept.model.names import resolve
    from vidconcept.model.outputs_cache import layer_outputs_of

    model = ConceptModel.load(model_dir, device=device)
    data = open_dataset(dataset_spec, split)
    if limit:
        data = data.subset(np.arange(min(limit, len(data))))
    names = {c: resolve(c, model.concepts, model.config.aliases) for c in data.concepts}
    names = {c: m for c, m in names.items() if m is not None}
    if len(set(names.values())) < len(names):  # two of the set's concepts are one of the model's: keep exact names
        names = {c: m for c, m in names.items() if c == m or list(names.values()).count(m) == 1}
    shared = list(names.values())
    if not shared:
        raise UsageError(f"model {model.name!r} and data set {dataset_spec!r} share no concept")

    outputs = model.score_outputs(layer_outputs_of(model, data, batch_size, cache, desc=f"evaluate {dataset_spec}"))
    model_cols = [model.concepts.index(c) for c in shared]
    data_cols = [data.concepts.index(c) for c in names]
    labels, mask = data.labels[:, data_cols], data.mask[:, data_cols]
    report = {"dataset": dataset_spec, "split": split, "metric": metric, "images": len(data), "concepts": shared,
              "aliases": {c: m for c, m in names.items() if c != m}, "outputs": {}}
    for kind, all_scores in outputs.items():
        scores = all_scores[:, model_cols]
        report["outputs"][kind] = metric_table(metric, scores, labels, mask, shared, data.strata, data.inclusion)
    return report

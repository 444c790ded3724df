"""LR detector experiments on cached layer outputs (runs/s4/cache)."""
import sys, time, json, argparse
from pathlib import Path
import numpy as np
from vidconcept.model import detectors as D
from vidconcept.evaluate import average_precision
import json as _j
import os
C = Path(os.environ.get("CACHE", "runs/s4/cache"))
CONCEPTS = _j.load(open("models/default/config.json"))["concepts"]
LAYERS = ["features", "ext1", "logits"]
SETS = [("voc", "val"), ("scene15", "test"), ("intel", "test")]

def load(name, split, var):
    d = np.load(C / f"{name}-{split}-{var}.npz")
    cols = [CONCEPTS.index(c) for c in d["concepts"]]
    lab = np.zeros((len(d["labels"]), len(CONCEPTS)), np.float32); msk = np.zeros_like(lab)
    lab[:, cols], msk[:, cols] = d["labels"], d["mask"]
    return {**{k: d[k] for k in LAYERS}, "labels": lab, "mask": msk, "cols": cols, "n": len(lab)}

def cat(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in LAYERS + ["labels", "mask"]}

def mapof(scores, d):
    aps = [average_precision(scores[:, c], d["labels"][:, c], d["mask"][:, c]) for c in d["cols"]]
    return float(np.nanmean(aps)), aps

def fit(train, c, layers=LAYERS):
    D.LR_C = c
    return [D.fit_layer(l, train[l], train["labels"], train["mask"]) for l in layers]

def score(dets, d):
    return D.fuse([det.predict(d[det.layer]) for det in dets])

"""Bootstrap spread of test MAP (fused, direct and their difference) for models/default on cached layer outputs.

Resamples each test set's photos with replacement (1000 draws, seed 0; fused and direct scored on the
same draws) and prints the MAP of the photos as they are, the 2.5/97.5 percentiles of the draws and how
often fused reaches the issue's target.
Usage: CACHE=runs/s6/cache python benchmarks/explore/lr_bootstrap.py
"""
import sys
sys.path.insert(0, "benchmarks/explore")
from lr_cache import *
from vidconcept.model.detectors import load_detectors

TARGETS = {"voc": 0.88, "scene15": 0.975, "intel": 0.97}
dets = load_detectors(Path("models/default/detectors.npz"))
rng = np.random.default_rng(0)
for name, split in SETS:
    d = load(name, split, "whole")
    fused, direct = score(dets, d), 1 / (1 + np.exp(-d["logits"].astype(np.float64)))
    draws = []
    for _ in range(1000):
        i = rng.integers(0, d["n"], d["n"])
        sample = {**d, "labels": d["labels"][i], "mask": d["mask"][i]}
        draws.append((mapof(fused[i], sample)[0], mapof(direct[i], sample)[0]))
    f, g = np.array(draws).T
    ci = lambda x: "[{:.4f}, {:.4f}]".format(*np.percentile(x, [2.5, 97.5]))
    print(f"{name} {split}: fused {mapof(fused, d)[0]:.4f} {ci(f)}, reaches {TARGETS[name]} in {np.mean(f >= TARGETS[name]):.0%}"
          f" of draws; direct {mapof(direct, d)[0]:.4f} {ci(g)}; fused - direct {ci(f - g)}, < 0 in {np.mean(f < g):.0%}",
          flush=True)

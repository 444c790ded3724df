"""Are the training photos' layer outputs cleaner than new photos'? (the memorisation hypothesis, issue 4)

For each layer at the C that cross-validation chose for models/default, MAP of 3-fold cross-validated
predictions on the training photos (as `lr_cv.py` folds them), per data set, next to the test MAP of the
detectors fitted on all training photos; and the direct output's MAP on training and test photos.
Usage: CACHE=runs/s6/cache python benchmarks/explore/lr_memorised.py
"""
import sys
sys.path.insert(0, "benchmarks/explore")
from lr_cache import *

names = ["voc", "scene15", "intel"]
parts = [load(n, "train", "whole") for n in names]
train = cat(parts)
tests = {n: load(n, s, "whole") for n, s in SETS}
set_of = np.concatenate([np.full(p["n"], k) for k, p in enumerate(parts)])
fold = np.random.default_rng(0).permutation(len(set_of)) % 3
chosen = {"features": 0.03, "ext1": 0.1, "logits": 1.0}
sig = lambda z: 1 / (1 + np.exp(-z.astype(np.float64)))
for k, name in enumerate(names):
    rows = set_of == k
    d = {**{l: train[l][rows] for l in LAYERS}, "labels": train["labels"][rows], "mask": train["mask"][rows], "cols": parts[k]["cols"]}
    print(f"{name}: direct train {mapof(sig(d['logits']), d)[0]:.4f} test {mapof(sig(tests[name]['logits']), tests[name])[0]:.4f}", flush=True)
for layer, c in chosen.items():
    cv = np.zeros_like(train["labels"])
    for f in range(3):
        held = fold == f
        det = fit({key: v[~held] for key, v in train.items()}, c, [layer])[0]
        cv[held] = det.predict(train[layer][held])
    full = fit(train, c, [layer])[0]
    for k, name in enumerate(names):
        rows = set_of == k
        d = {"labels": train["labels"][rows], "mask": train["mask"][rows], "cols": parts[k]["cols"]}
        print(f"{layer} C={c} {name}: CV on train {mapof(cv[rows], d)[0]:.4f}, test {mapof(full.predict(tests[name][layer]), tests[name])[0]:.4f}", flush=True)

"""Choose each layer's LR C by 3-fold CV on the training photos only (mean AP over all concepts).

Arguments (optional): a comma-separated C grid, comma-separated layers.
"""
import sys, time
sys.path.insert(0, "benchmarks/explore")
from lr_cache import *
names = ["voc", "scene15", "intel"]
train = cat([load(n, "train", "whole") for n in names])
n = len(train["labels"]); rng = np.random.default_rng(0); fold = rng.permutation(n) % 3
grid = [float(c) for c in sys.argv[1].split(",")] if len(sys.argv) > 1 else [0.01, 0.03, 0.1, 0.3, 1.0]
for layer in (sys.argv[2].split(",") if len(sys.argv) > 2 else LAYERS):
    res = {}
    for c in grid:
        t = time.time(); aps = []
        for k in range(3):
            tr = {key: v[fold != k] for key, v in train.items()}; te = {key: v[fold == k] for key, v in train.items()}
            det = fit(tr, c, [layer])[0]
            p = det.predict(te[layer])
            aps.append([average_precision(p[:, j], te["labels"][:, j], te["mask"][:, j]) for j in range(len(CONCEPTS))])
        res[c] = float(np.nanmean(np.nanmean(np.array(aps), 0)))
        print(layer, c, f"{res[c]:.4f}", f"{time.time()-t:.0f}s", flush=True)
    print(layer, "best C", max(res, key=res.get), flush=True)

import sys, time
sys.path.insert(0, "benchmarks/explore")
from lr_cache import *
names = ["voc", "scene15", "intel"]
trains = [load(n, "train", "whole") for n in names]
train = cat(trains)
tests = {n: load(n, s, "whole") for n, s in SETS}
print("train rows", len(train["labels"]), flush=True)
for c in [float(x) for x in sys.argv[1].split(",")]:
    t = time.time()
    dets = fit(train, c)
    row = {n: mapof(score(dets, d), d)[0] for n, d in tests.items()}
    per = {n: [mapof(det.predict(d[det.layer]), d)[0] for det in dets] for n, d in tests.items()}
    print(f"C={c}", " ".join(f"{n} {v:.4f}" for n, v in row.items()), "| per-layer", {n: [round(x, 4) for x in v] for n, v in per.items()}, f"{time.time()-t:.0f}s", flush=True)

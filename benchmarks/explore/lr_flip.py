import sys, time
sys.path.insert(0, "benchmarks/explore")
from lr_cache import *
names = ["voc", "scene15", "intel"]
train = cat([load(n, "train", v) for n in names for v in ("whole", "flip")])
tests = {n: load(n, s, "whole") for n, s in SETS}
for c in [float(x) for x in sys.argv[1].split(",")]:
    t = time.time(); dets = fit(train, c)
    row = {n: mapof(score(dets, d), d)[0] for n, d in tests.items()}
    per = {n: [round(mapof(det.predict(d[det.layer]), d)[0], 4) for det in dets] for n, d in tests.items()}
    print(f"flip C={c}", " ".join(f"{n} {v:.4f}" for n, v in row.items()), per, f"{time.time()-t:.0f}s", flush=True)

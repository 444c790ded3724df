import sys, time
sys.path.insert(0, "benchmarks/explore")
from lr_cache import *
names = ["voc", "scene15", "intel"]
train = cat([load(n, "train", "whole") for n in names])
tests = {n: load(n, s, "whole") for n, s in SETS}
combo = dict(features=float(sys.argv[1]), ext1=float(sys.argv[2]), logits=float(sys.argv[3]))
dets = [fit(train, c, [l])[0] for l, c in combo.items()]
print(combo, " ".join(f"{n} {mapof(score(dets, d), d)[0]:.4f}" for n, d in tests.items()))

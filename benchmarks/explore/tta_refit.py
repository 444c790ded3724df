import sys, numpy as np
from pathlib import Path
from vidconcept.model import ConceptModel
from vidconcept.evaluate import metric_table
from vidconcept.model.detectors import fuse, fit_layer
import vidconcept.model.detectors as D
m = ConceptModel.load("models/default", device="cpu")
C = Path("runs/tta/cache")  
L = [d.layer for d in m.detectors]
def load(name, split, var):
    d = np.load(C / f"{name}-{split}-{var}.npz"); return {k: d[k] for k in d.files}
def pool(d):
    n = len(d["labels"]); lab = np.zeros((n, len(m.concepts)), np.float32); mask = np.zeros_like(lab)
    for j, c in enumerate(d["concepts"]):
        k = m.concepts.index(str(c)); lab[:, k] = d["labels"][:, j]; mask[:, k] = d["mask"][:, j]
    return lab, mask
def mapof(scores, d):
    concepts = [str(c) for c in d["concepts"]]
    mc = [m.concepts.index(c) for c in concepts]
    return metric_table("ap", scores[:, mc], d["labels"], d["mask"], concepts, None, None)["map"]
trainvars = sys.argv[1].split(",")  # e.g. crop or crop,cropflip
Cs = [[float(x) for x in c.split("/")] for c in sys.argv[2].split(",")]
X = {l: [] for l in L}; Y = []; M = []
for name in ["voc", "intel", "scene15"]:
    for v in trainvars:
        d = load(name, "train", v); lab, mask = pool(d); Y.append(lab); M.append(mask)
        for l in L: X[l].append(d[l])
X = {l: np.concatenate(v) for l, v in X.items()}; Y = np.concatenate(Y); M = np.concatenate(M)
tv = sys.argv[3] if len(sys.argv) > 3 else "crop"
tests = {(n, s): load(n, s, tv) for n, s in [("voc", "val"), ("scene15", "test"), ("intel", "test")]}
for c in Cs:
    dets = []
    for l, cc in zip(L, c if len(c) == 3 else c * 3):
        D.LR_C = cc; dets.append(fit_layer(l, X[l], Y, M))
    res = []
    for (n, s), d in tests.items():
        lr = {det.layer: det.predict(d[det.layer]) for det in dets}
        if tv == "crop" and len(sys.argv) > 4:
            d2 = load(n, s, "cropflip"); lr = {det.layer: (lr[det.layer] + det.predict(d2[det.layer])) / 2 for det in dets}
        res.append(f"{n} fused {mapof(fuse(list(lr.values())), d):.4f} " + " ".join(f"{k} {mapof(v, d):.4f}" for k, v in lr.items()))
    print(f"train={trainvars} C={c}", " | ".join(res), flush=True)

import sys, numpy as np, torch
from pathlib import Path
from vidconcept.model import ConceptModel
from vidconcept.evaluate import metric_table
from vidconcept.model.detectors import fuse
m = ConceptModel.load("models/default", device="cpu")
C = Path("runs/tta/cache")  
def load(name, split, var):
    d = np.load(C / f"{name}-{split}-{var}.npz")
    return {k: d[k] for k in d.files}
def mapof(name, split, scores, d):
    concepts = list(d["concepts"]); shared = [c for c in concepts if c in m.concepts]
    mc = [m.concepts.index(c) for c in shared]; dc = [concepts.index(c) for c in shared]
    return metric_table("ap", scores[:, mc], d["labels"][:, dc], d["mask"][:, dc], shared, None, None)["map"]
def scores(o):
    s = {"direct": 1/(1+np.exp(-o["logits"]))}
    lr = [det.predict(o[det.layer]) for det in m.detectors]
    s["fused"] = fuse(lr)
    return s
sets = [("voc", "val"), ("scene15", "test"), ("intel", "test")]
for name, split in sets:
    vs = ["crop", "cropflip"] + (["full", "fullflip"] if name == "voc" else [])
    outs = {}
    for v in vs:
        f = C / f"{name}-{split}-{v}.npz"
        if f.exists(): outs[v] = load(name, split, v)
    S = {v: scores(o) for v, o in outs.items()}
    d = next(iter(outs.values()))
    row = {}
    for v in S: row[v] = {k: mapof(name, split, s, d) for k, s in S[v].items()}
    if "cropflip" in S:
        row["crop+flip(avg prob)"] = {k: mapof(name, split, (S["crop"][k]+S["cropflip"][k])/2, d) for k in S["crop"]}
        avg = {k: (outs["crop"][k]+outs["cropflip"][k])/2 for k in outs["crop"] if k not in ("labels","mask","concepts")}
        row["crop+flip(avg feat)"] = {k: mapof(name, split, s, d) for k, s in scores(avg).items()}
    if "fullflip" in S:
        row["full+flip(avg prob)"] = {k: mapof(name, split, (S["full"][k]+S["fullflip"][k])/2, d) for k in S["full"]}
        row["all4"] = {k: mapof(name, split, sum(S[v][k] for v in S)/4, d) for k in S["crop"]}
    for r, vals in row.items(): print(name, split, f"{r:22s}", "  ".join(f"{k} {v:.4f}" for k, v in vals.items()))

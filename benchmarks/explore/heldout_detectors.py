"""Do LR detectors fitted on photos the network has not seen beat those fitted on its training photos?

A controlled small-scale test of the fix docs/STUDY.md proposes for the fused output (issue 4), on
Scene-15 alone: split its training photos in two stratified halves A and B, fine-tune lite0 FT3-ex1-512
(whole network, random 224 px crops, inference on whole images at 288 px, as models/default) on A only,
then fit the LR detectors (C = 1 and C by CV) either on A — what `train()` does — or on B, and score
Scene-15 test. Both detector sets see 750 photos; a third set is fitted on A and B together (1500,
half of them unseen). Writes runs/s6/heldout/ (the network and layer outputs are reused when there).
The usual recipe for comparison (`full`): the network trained on A and B, the detectors fitted on them.
Usage: python benchmarks/explore/heldout_detectors.py [EPOCHS [SEED [full]]]   (SEED draws the halves)
"""
import csv, json, sys, time
from pathlib import Path
import numpy as np, torch
from vidconcept.data import open_dataset
from vidconcept.evaluate import average_precision
from vidconcept.model import ConceptModel
from vidconcept.model.detectors import fit_layers, fuse
from vidconcept.model.train import train

torch.set_num_threads(2)
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
full = len(sys.argv) > 3 and sys.argv[3] == "full"
tag = f"{epochs}-full" if full else str(epochs)
root = Path("runs/s6/heldout") / ("" if seed == 0 else f"seed{seed}"); root.mkdir(parents=True, exist_ok=True)
data = open_dataset("folder:../shared/data/scene15", "train")
rng = np.random.default_rng(seed)
half = np.zeros(len(data), int)
for c in range(len(data.concepts)):
    rows = rng.permutation(np.flatnonzero(data.labels[:, c] > 0))
    half[rows[1::2]] = 1
for h, name in enumerate("ab"):
    with open(root / f"{name}.csv", "w", newline="") as f:
        w = csv.writer(f); w.writerow(["path", *data.concepts])
        for i in np.flatnonzero(half == h):
            w.writerow([str(Path(data.paths[i]).resolve()), *[int(v) for v in data.labels[i]]])
out = root / ("net-ab" if full else "net-a")
t = time.time()
if not (out / "config.json").exists():
    train("tf_efficientnet_lite0", "ft3-ex1-512", [f"csv:{root / h}.csv" for h in ("ab" if full else "a")], out,
          epochs=epochs, lr=0.01, lr_mult=0.1, batch_size=32, image_size=288, train_size=224, crop_mode="none",
          workers=2, detectors=False)
print(f"trained {epochs} epochs on {'A and B' if full else 'A'} in {time.time() - t:.0f} s", flush=True)
model = ConceptModel.load(out, device="cpu")
test = open_dataset("folder:../shared/data/scene15", "test")
def outputs(d, rows):
    parts = {}
    for s in range(0, len(rows), 32):
        o = model.layer_outputs([d.load_image(i) for i in rows[s:s + 32]])
        for k in model.net.lr_layers: parts.setdefault(k, []).append(o[k])
    return {k: np.concatenate(v) for k, v in parts.items()}
cols = [data.concepts.index(c) for c in model.config.concepts]
mapof = lambda s, lab: float(np.mean([average_precision(s[:, j], lab[:, j]) for j in range(lab.shape[1])]))
sig = lambda z: 1 / (1 + np.exp(-z.astype(np.float64)))
cache = root / f"outputs-{tag}.npz"
if cache.exists():
    with np.load(cache) as z:
        o = {k: {l: z[f"{k}/{l}"] for l in model.net.lr_layers} for k in ("a", "b", "test")}
else:
    o = {"a": outputs(data, np.flatnonzero(half == 0)), "b": outputs(data, np.flatnonzero(half == 1)),
         "test": outputs(test, np.arange(len(test)))}
    np.savez(cache, **{f"{k}/{l}": v for k, d in o.items() for l, v in d.items()})
o["ab"] = {l: np.concatenate([o["a"][l], o["b"][l]]) for l in model.net.lr_layers}
lab = {"a": data.labels[half == 0][:, cols], "b": data.labels[half == 1][:, cols], "test": test.labels[:, [test.concepts.index(c) for c in model.config.concepts]]}
lab["ab"] = np.concatenate([lab["a"], lab["b"]])
result = {"epochs": epochs, "seed": seed, "network": "A and B" if full else "A", "direct": {k: round(mapof(sig(o[k]["logits"]), lab[k]), 4) for k in ("a", "b", "test")}}
for fit_on in ("ab",) if full else ("a", "b", "ab"):
    for c in [1.0, "cv"]:
        dets, used = fit_layers(o[fit_on], lab[fit_on], np.ones_like(lab[fit_on]), c)
        probs = [d.predict(o["test"][d.layer]) for d in dets]
        result[f"fit on {fit_on.upper()}, C {c}"] = {"fused": round(mapof(fuse(probs), lab["test"]), 4), "C": used,
                                                    **{d.layer: round(mapof(p, lab["test"]), 4) for d, p in zip(dets, probs)}}
print(json.dumps(result, indent=1), flush=True)
(root / f"result-{tag}.json").write_text(json.dumps(result, indent=1))

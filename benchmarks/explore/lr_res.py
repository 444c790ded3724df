import sys
sys.path.insert(0, "benchmarks/explore")
from lr_cache import *
from vidconcept.model.concept_model import ConceptModel
from vidconcept.model.bundle import read_config, bundle_detectors
from pathlib import Path
bundle = Path(os.environ.get("BUNDLE", "models/default"))
dets = bundle_detectors(bundle, read_config(bundle))
for tag in ["", "320", "352"]:
    row = []
    for n, s in SETS:
        f = C / f"{n}-{s}-whole{tag}.npz"
        if not f.exists(): continue
        d = load(n, s, "whole" + tag)
        direct = 1 / (1 + np.exp(-d["logits"]))
        row.append(f"{n} fused {mapof(score(dets, d), d)[0]:.4f} direct {mapof(direct, d)[0]:.4f}")
    print(tag or 288, " | ".join(row))

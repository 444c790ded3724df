"""Layer outputs of models/default on whole images (and mirrored train images) for LR experiments."""
import sys, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from vidconcept.model import ConceptModel
from vidconcept.data import open_dataset
torch.set_num_threads(2)
import os
out = Path(os.environ.get("CACHE", "runs/s4/cache")); out.mkdir(parents=True, exist_ok=True)
model = ConceptModel.load(os.environ.get("BUNDLE", "models/default"), device="cpu")
size = int(sys.argv[1]) if len(sys.argv) > 1 else 288
from vidconcept.model.concept_model import eval_transform
if size != 288:
    model.data_config["input_size"] = [3, size, size]; model._transform = eval_transform(model.data_config)
tag = "" if size == 288 else str(size)
only = sys.argv[2].split(",") if len(sys.argv) > 2 else None
specs = {"voc": "voc:../shared/data/voc2007", "scene15": "folder:../shared/data/scene15", "intel": "folder:../shared/data/intel_scenes"}
jobs = [("voc", "val", "whole"), ("scene15", "test", "whole"), ("intel", "test", "whole"),
        ("scene15", "train", "whole"), ("voc", "train", "whole"), ("intel", "train", "whole"),
        ("scene15", "train", "flip"), ("voc", "train", "flip"), ("intel", "train", "flip")]
layers = None
for name, split, var in jobs:
    f = out / f"{name}-{split}-{var}{tag}.npz"
    if f.exists() or (only and f"{name}-{split}-{var}" not in only): continue
    data = open_dataset(specs[name], split)
    t = time.time(); parts = {}
    for s in range(0, len(data), 32):
        imgs = [data.load_image(i) for i in range(s, min(s + 32, len(data)))]
        if var == "flip": imgs = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in imgs]
        o = model.layer_outputs(imgs)
        for k, v in o.items(): parts.setdefault(k, []).append(v)
    np.savez(f, **{k: np.concatenate(v) for k, v in parts.items()}, labels=data.labels, mask=data.mask, concepts=np.array(data.concepts))
    print(name, split, var, len(data), f"{time.time()-t:.0f}s", flush=True)

"""Cache default-model layer outputs under test-time variants (crop / full image, ± flip)."""
import sys, time, math
from pathlib import Path
import numpy as np, torch
from PIL import Image
from vidconcept.model import ConceptModel
from vidconcept.data import open_dataset
torch.set_num_threads(2)
out = Path("runs/tta/cache"); out.mkdir(parents=True, exist_ok=True)
model = ConceptModel.load("models/default", device="cpu")
net = model._runner
mean = torch.tensor([0.5]*3).reshape(3,1,1); std = mean
def tensor(img):
    x = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()).permute(2,0,1)
    return (x.float().div_(255) - mean) / std
def full(img, size=288):
    w, h = img.size; s = size / min(w, h)
    nw, nh = max(size, round(w*s)), max(size, round(h*s))
    return img.resize((nw, nh), Image.BICUBIC)
specs = {"voc": "voc:../shared/data/voc2007", "scene15": "folder:../shared/data/scene15", "intel": "folder:../shared/data/intel_scenes"}
splits = {"voc": ["val", "train"], "scene15": ["test", "train"], "intel": ["test", "train"]}
variants = sys.argv[1].split(",")
for name in sys.argv[2].split(","):
    for split in splits[name]:
        data = open_dataset(specs[name], split)
        for var in variants:
            f = out / f"{name}-{split}-{var}.npz"
            if f.exists(): continue
            t = time.time(); acc = {}
            groups = {}
            for i in range(len(data)):
                img = data.load_image(i)
                if var.startswith("full"):
                    img = full(img)
                else:
                    img = None if False else img
                groups.setdefault(i, img)
            # batch by size
            bysize = {}
            for i, img in groups.items():
                x = model._transform(img) if var.startswith("crop") else tensor(img)
                if var.endswith("flip"): x = x.flip(-1)
                bysize.setdefault(tuple(x.shape), []).append((i, x))
            res = {}
            with torch.inference_mode():
                for shape, items in bysize.items():
                    for s in range(0, len(items), 32):
                        chunk = items[s:s+32]
                        xb = torch.stack([x for _, x in chunk]).contiguous(memory_format=torch.channels_last)
                        o = net.outputs(xb)
                        for j, (i, _) in enumerate(chunk):
                            res[i] = {k: v[j].numpy().copy() for k, v in o.items()}
            keys = res[0].keys()
            np.savez(f, **{k: np.stack([res[i][k] for i in range(len(data))]) for k in keys},
                     labels=data.labels, mask=data.mask, concepts=np.array(data.concepts))
            print(name, split, var, len(data), f"{time.time()-t:.0f}s", flush=True)

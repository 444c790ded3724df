# LR on VOC only, train variants vs test variants, shipped-style C=1 and C-per-layer
import sys, numpy as np
sys.argv += []
exec(open("benchmarks/explore/tta_refit.py").read().split("trainvars =")[0])
for trv, tev, cs in [("crop", "crop", [1,1,1]), ("full", "full", [1,1,1]), ("crop,cropflip", "crop", [1,1,1]), ("full,fullflip", "full", [1,1,1]), ("full,fullflip", "full", [0.01,0.03,1])]:
    X = {l: [] for l in L}; Y = []; M = []
    for v in trv.split(","):
        d = load("voc", "train", v); lab, mask = pool(d); Y.append(lab); M.append(mask)
        for l in L: X[l].append(d[l])
    X = {l: np.concatenate(v) for l, v in X.items()}; Y = np.concatenate(Y); M = np.concatenate(M)
    dets = []
    for l, cc in zip(L, cs): D.LR_C = cc; dets.append(fit_layer(l, X[l], Y, M))
    d = load("voc", "val", tev); lr = [det.predict(d[det.layer]) for det in dets]
    d2 = load("voc", "val", tev + "flip"); lr2 = [det.predict(d2[det.layer]) for det in dets]
    print(trv, tev, cs, f"fused {mapof(fuse(lr), d):.4f} fused+flipTTA {mapof((fuse(lr)+fuse(lr2))/2, d):.4f}", flush=True)

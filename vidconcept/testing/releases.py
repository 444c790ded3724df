"""New versions of a model bundle, made by perturbing a copy: what `vidconcept upgrade` is
tested and benchmarked against (tests/test_upgrade.py, benchmarks/upgrade.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def detectors_release(bundle: Path, out: Path, seed: int = 0) -> Path:
    """``bundle`` with every LR detector's weights moved by 5 % noise: a new version with the
    same concepts and the same backbone (as ``refit-detectors`` makes)."""
    shutil.copytree(bundle, out)
    with np.load(out / "detectors.npz") as data:
        arrays = dict(data)
    rng = np.random.default_rng(seed)
    for key in (k for k in arrays if k.endswith("/coef")):
        arrays[key] = (arrays[key] * (1 + 0.05 * rng.standard_normal(arrays[key].shape))).astype(np.float32)
    np.savez(out / "detectors.npz", **arrays)
    return out


def network_release(bundle: Path, out: Path, seed: int = 0) -> Path:
    """``bundle`` with the weights of its backbone's last stage moved by 0.5 % noise: a version
    whose features change, so an upgrade must run the network on every keyframe again."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(bundle, out)
    weights = load_file(out / "weights.safetensors")
    rng = np.random.default_rng(seed)
    last = sorted({k.split(".")[2] for k in weights if k.startswith("backbone.stages.")})[-1]
    for key in [k for k in weights if k.startswith(f"backbone.stages.{last}.") and k.endswith("weight")]:
        w = weights[key]
        weights[key] = (w * (1 + 0.005 * rng.standard_normal(w.shape))).astype(w.dtype)
    save_file(weights, out / "weights.safetensors")
    return out

"""A model's identity: what its scores depend on, computed in one place.

A bundle's identity is its name, its concept list (``concepts_sha1``) and ``bundle_sha1``: the
digest of its preprocessing, strategy, detector and calibration records, the bundle's
``cpu_precision`` and the bytes of its weights, detectors and calibration files. Two versions of
a model with one name and concept list (a retrained default) score differently and differ here;
metrics, the model card and aliases do not change a score and are left out. The precision a CPU
chose at load is left out too (``ConceptModel.runtime``, :mod:`vidconcept.model.cpu`): one bundle
is one version on every CPU, its scores within ``SCORE_TOLERANCE``.

Ingest's version check, the upgrade's digests and ``info`` all ask this module. It reads
``config.json`` directly, without torch, so ``info`` stays fast.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

from vidconcept.errors import VidconceptError


def concepts_sha1(concepts: list[str]) -> str:
    """Digest of a concept list, in order (a score column means the same concept only in the same place)."""
    return hashlib.sha1("\n".join(concepts).encode()).hexdigest()[:16]


def bundle_sha1(folder: Path, config) -> str:
    """Digest of what makes a bundle's scores (see the module doc); ``config`` a ``BundleConfig`` or
    anything with its fields."""
    calibration, precision = getattr(config, "calibration", None), getattr(config, "cpu_precision", "fp32")
    described = [config.data_config, config.weights, config.strategy, config.detectors] + \
        ([calibration] if calibration else []) + ([{"cpu_precision": precision}] if precision != "fp32" else [])
    h = hashlib.sha1(json.dumps(described, sort_keys=True).encode())  # a bundle without calibration: as before
    for name in ((config.weights or {}).get("file"), (config.detectors or {}).get("file"), (calibration or {}).get("file")):
        if name and (folder / name).is_file():
            h.update((folder / name).read_bytes())
    return h.hexdigest()[:16]


def bundle_identity(folder: str | os.PathLike) -> dict:
    """``{"name", "concepts", "concepts_sha1", "bundle_sha1"}`` of a bundle folder, without loading its network.

    Cached while the folder's files are unchanged (``info`` asks on every call, and hashing the
    weights costs tens of milliseconds)."""
    folder = Path(folder).resolve()
    stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(folder.iterdir()) if f.is_file())
    return dict(_bundle_identity(folder, stamp))


@functools.lru_cache(maxsize=8)
def _bundle_identity(folder: Path, stamp: tuple) -> dict:
    try:  # config.json read directly: vidconcept.model.read_config would import torch (seconds)
        raw = json.loads((folder / "config.json").read_text())
        config = SimpleNamespace(name=raw["name"], concepts=raw["concepts"], data_config=raw.get("data_config", {}),
                                 weights=raw.get("weights", {}), strategy=raw.get("strategy"),
                                 detectors=raw.get("detectors"), calibration=raw.get("calibration"),
                                 cpu_precision=raw.get("cpu_precision", "fp32"))
    except (OSError, ValueError, KeyError) as exc:
        raise VidconceptError(f"{folder}: cannot read the bundle's config.json: {exc}") from exc
    return {"name": config.name, "concepts": len(config.concepts), "concepts_sha1": concepts_sha1(config.concepts),
            "bundle_sha1": bundle_sha1(folder, config)}


def model_identity(model) -> dict:
    """The identity of a loaded model (``ConceptModel`` or anything with ``name``, ``concepts``,
    ``feature_dim`` and, for a bundle, ``bundle_dir`` and ``config``), plus its feature size and the
    digest of its backbone (an upgrade to a version that keeps it reuses the stored features)."""
    out = {"name": model.name, "concepts": len(model.concepts), "concepts_sha1": concepts_sha1(model.concepts),
           "feature_dim": model.feature_dim}
    folder, config = getattr(model, "bundle_dir", None), getattr(model, "config", None)
    if folder is not None and config is not None:
        out["bundle_sha1"] = bundle_sha1(Path(folder), config)
    backbone = getattr(model, "backbone_digest", None)
    if backbone:
        out["backbone_sha1"] = backbone
    return out

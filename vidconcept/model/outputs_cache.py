"""Layer outputs of a data set, computed once per network and kept on disk.

Refitting LR detectors or their calibration leaves the network as it is, so the layer outputs
of the photos do not change; on a 2-core CPU they are most of the cost (minutes per thousand
photos). With a cache folder, :func:`layer_outputs_of` stores them in one ``.npz`` per
(network, preprocessing, image list) and reads them back next time. The key hashes the
weights file, the data config and the images' resolved paths, so a retrained network or
another crop mode never reads stale outputs.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def cache_key(model, data) -> str:
    """Hex key of ``model``'s network and preprocessing and ``data``'s images."""
    config = model.config
    h = hashlib.sha1(json.dumps([config.backbone, config.strategy, config.weights, config.data_config],
                                sort_keys=True).encode())
    folder = getattr(model, "bundle_dir", None)
    weights = (config.weights or {}).get("file")
    if folder is not None and weights and (Path(folder) / weights).is_file():
        h.update((Path(folder) / weights).read_bytes())
    for path in data.paths:
        h.update(str(Path(path).resolve()).encode() + b"\0")
    return h.hexdigest()[:20]


def layer_outputs_of(model, data, batch_size: int = 32, cache: Path | None = None,
                     desc: str = "layer outputs") -> dict[str, np.ndarray]:
    """Every named layer output of every image of ``data`` (``model.layer_outputs``), cached in ``cache`` if given."""
    from tqdm.auto import tqdm

    path = Path(cache) / f"outputs-{cache_key(model, data)}.npz" if cache else None
    if path is not None and path.is_file():
        with np.load(path) as stored:
            log.info("layer outputs of %s read from %s", data.spec, path)
            return {k: stored[k] for k in stored.files}
    parts: dict[str, list[np.ndarray]] = {}
    for start in tqdm(range(0, len(data), batch_size), desc=desc, unit="batch"):
        images = [data.load_image(i) for i in range(start, min(start + batch_size, len(data)))]
        for name, value in model.layer_outputs(images).items():
            parts.setdefault(name, []).append(value)
    outputs = {k: np.concatenate(v) for k, v in parts.items()}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **outputs)
        tmp.replace(path)
        log.info("layer outputs of %s cached in %s", data.spec, path)
    return outputs

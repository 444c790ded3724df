"""A model's identity is computed in one place (vidconcept.model.identity) from what its scores depend on."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from vidconcept.model.identity import bundle_identity

DEFAULT = Path(__file__).resolve().parent.parent / "models" / "default"


def copy_bundle(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(DEFAULT, folder)
    return folder


def test_metrics_card_and_aliases_leave_the_identity(tmp_path):
    a, b = copy_bundle(tmp_path, "a"), copy_bundle(tmp_path, "b")
    config = json.loads((b / "config.json").read_text())
    config["metrics"] = {"anything": {"map": 0.0}}
    config["aliases"] = {**(config.get("aliases") or {}), "some_new_alias": config["concepts"][0]}
    (b / "config.json").write_text(json.dumps(config))
    (b / "MODEL.md").write_text("another card\n")
    assert bundle_identity(a) == bundle_identity(b)


def test_weights_detectors_calibration_and_precision_change_it(tmp_path):
    base = bundle_identity(copy_bundle(tmp_path, "base"))
    for i, name in enumerate(("weights.safetensors", "detectors.npz", "calibration.npz")):
        folder = copy_bundle(tmp_path, f"changed-{i}")
        data = bytearray((folder / name).read_bytes())
        data[-1] ^= 0xFF
        (folder / name).write_bytes(bytes(data))
        assert bundle_identity(folder)["bundle_sha1"] != base["bundle_sha1"], name
    folder = copy_bundle(tmp_path, "fp32")
    config = json.loads((folder / "config.json").read_text())
    config["cpu_precision"] = "fp32"
    (folder / "config.json").write_text(json.dumps(config))
    assert bundle_identity(folder)["bundle_sha1"] != base["bundle_sha1"]
    assert bundle_identity(folder)["concepts_sha1"] == base["concepts_sha1"]


def test_identity_needs_no_torch():
    code = "import sys, vidconcept.model.identity as i; i.bundle_identity(sys.argv[1]); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code, str(DEFAULT)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""`vidconcept train` and `vidconcept evaluate` end to end on a tiny folder data set."""
import json
import subprocess
import sys

import pytest
import skimage.data

from vidconcept.testing.photos import write_folder_set

pytestmark = pytest.mark.slow  # trains real networks through the CLI: minutes

SOURCES = {"coffee": skimage.data.coffee(), "cat": skimage.data.chelsea(), "rocket": skimage.data.rocket()}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "vidconcept", *args], capture_output=True, text=True, timeout=600)


def test_train_then_evaluate(tmp_path):
    spec = write_folder_set(tmp_path / "set", SOURCES, per_concept=5, size=72)
    out = tmp_path / "model"
    proc = cli("train", "--backbone", "tf_efficientnet_lite0", "--strategy", "ft3-ex1-64", "--dataset", spec,
               "--epochs", "1", "--lr-mult", "0.1", "--batch-size", "8", "--image-size", "64",
               "--cache-stages", "12", "--device", "cpu", "--repeat", f"{spec}=2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "config.json").exists() and (out / "MODEL.md").exists()
    assert json.loads((out / "config.json").read_text())["training"]["repeat"] == {spec: 2}
    proc = cli("evaluate", "--model", str(out), "--dataset", spec, "--split", "train", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["images"] == 15 and {"direct", "fused"} <= set(data["outputs"])
    assert 0 <= data["outputs"]["fused"]["map"] <= 1

    proc = cli("refit-detectors", str(out), "--crop-mode", "none", "--detector-c", "cv", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr  # its own training data, each layer's C by cross-validation
    proc = cli("evaluate", "--model", str(out), "--dataset", spec, "--split", "train", "--json", "--record")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["data_config"]["crop_mode"] == "none"
    assert set(config["training"]["detectors"]["c"]) == {"features", "ext1", "logits"}
    entry = config["metrics"][f"{spec} train"]
    assert entry["command"] == f"vidconcept evaluate --model {out} --dataset {spec} --split train --json"
    assert entry["outputs"] == json.loads(proc.stdout)["outputs"]
    assert entry["command"] in (out / "MODEL.md").read_text()


def test_bad_inputs_are_one_line_errors(tmp_path):
    spec = write_folder_set(tmp_path / "set", SOURCES, per_concept=2, size=48)
    proc = cli("train", "--backbone", "tf_efficientnet_lite9", "--strategy", "ft1-def", "--dataset", spec,
               "--out", str(tmp_path / "m"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "lite0" in proc.stderr
    proc = cli("train", "--backbone", "tf_efficientnet_lite0", "--strategy", "ft9-xx", "--dataset", spec,
               "--out", str(tmp_path / "m"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "strategy" in proc.stderr
    proc = cli("train", "--backbone", "tf_efficientnet_lite0", "--strategy", "ft1-def", "--dataset",
               f"folder:{tmp_path / 'missing'}", "--out", str(tmp_path / "m"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "missing" in proc.stderr
    for repeat in ["3", f"{spec}=two", f"folder:{tmp_path / 'other'}=2"]:
        proc = cli("train", "--backbone", "tf_efficientnet_lite0", "--strategy", "ft1-def", "--dataset", spec,
                   "--repeat", repeat, "--out", str(tmp_path / "m"))
        assert proc.returncode != 0 and "Traceback" not in proc.stderr and "repeat" in proc.stderr, proc.stderr
    for c in ["0", "-1", "strong"]:
        proc = cli("train", "--backbone", "tf_efficientnet_lite0", "--strategy", "ft1-def", "--dataset", spec,
                   "--detector-c", c, "--out", str(tmp_path / "m"))
        assert proc.returncode != 0 and "Traceback" not in proc.stderr and "'cv' or a positive number" in proc.stderr
    assert not (tmp_path / "m").exists()
    proc = cli("evaluate", "--model", str(tmp_path / "nothing"), "--dataset", "bogus:/x")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def test_torchvision_backbone_needs_weights(tmp_path):
    """No silent random weights: offline, googlenet without --weights is a clear error; a file works."""
    import torch
    import torchvision

    spec = write_folder_set(tmp_path / "set", SOURCES, per_concept=2, size=48)
    args = ["train", "--backbone", "googlenet", "--strategy", "ft1-def", "--dataset", spec, "--epochs", "1",
            "--batch-size", "6", "--image-size", "64", "--device", "cpu", "--out", str(tmp_path / "m")]
    proc = cli(*args)
    if proc.returncode == 0:  # torchvision's weights were cached or downloadable here
        return
    assert "--weights" in proc.stderr and "Traceback" not in proc.stderr
    weights = tmp_path / "googlenet.pth"
    torch.save(torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True).state_dict(), weights)
    proc = cli(*args, "--weights", str(weights))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m" / "config.json").exists()

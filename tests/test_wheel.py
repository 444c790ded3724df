"""The package as users install it: a built wheel in a fresh venv ingests with the shipped default model."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE_VIDEOS


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_built_wheel_ingests_with_the_default_model(tmp_path):
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout; the
    # copy follows the checkout's symlink vidconcept/models/default -> models/default.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "vidconcept", src / "vidconcept", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", src])
    wheel = next((tmp_path / "dist").glob("vidconcept-*.whl"))

    # No inherited PYTHONPATH: a checkout on it (with its vidconcept.egg-info) would make pip take
    # the wheel's package as installed already.
    env = {k: v for k, v in os.environ.items() if k not in ("VIDCONCEPT_MODEL", "VIDCONCEPT_INDEX", "PYTHONPATH")}
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], env=env)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel], env=env)

    # The dependencies (torch & co.) come from this interpreter's site-packages through PYTHONPATH,
    # where .pth files are not processed: the checkout's editable install is not on the path, and
    # the working directory is a temporary folder, not the checkout.
    run = tmp_path / "run"
    run.mkdir()
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
    where = _run([python, "-c", "import vidconcept, vidconcept.config as c; "
                  "print(vidconcept.__file__); print(c.DEFAULT_MODEL_DIR)"], cwd=run, env=env).stdout.split()
    package, model = Path(where[0]).resolve(), Path(where[1])
    assert package.is_relative_to(venv.resolve()), package
    assert model.is_relative_to(venv.resolve()) and (model / "weights.safetensors").is_file() and not model.is_symlink()

    shutil.copy(sorted(SAMPLE_VIDEOS.glob("*.mp4"))[0], run / "clip.mp4")
    out = _run([venv / "bin" / "vidconcept", "ingest", "clip.mp4", "--index", "idx", "--json", "-q"], cwd=run, env=env)
    summary = json.loads(out.stdout)
    assert summary["videos"] == 1 and summary["shots"] >= 1 and summary["failed"] == []
    info = json.loads(_run([python, "-m", "vidconcept", "info", "--index", "idx", "--json"], cwd=run, env=env).stdout)
    assert info["model"]["name"] == "default" and info["upgrade_available"] is None

"""benchmarks/strategies.py end to end on a tiny VOC-layout set: runs, resumes, reports."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import skimage.data

from vidconcept.testing.photos import write_voc_set

pytestmark = pytest.mark.slow  # trains a small study grid: a minute or more

ROOT = Path(__file__).resolve().parent.parent


def study(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "strategies.py"), *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)


def test_study_runs_resumes_and_reports(tmp_path):
    voc = tmp_path / "voc"
    write_voc_set(voc, {"cat": skimage.data.chelsea(), "coffee": skimage.data.coffee(),
                        "rocket": skimage.data.rocket()}, split="train", per_concept=6, size=72)
    main = voc / "ImageSets" / "Main"
    for path in list(main.glob("*train.txt")):  # val = train: this checks the pipeline, not generalisation
        shutil.copy(path, main / path.name.replace("train", "val"))
    out = tmp_path / "runs"
    args = ["--voc", str(voc), "--out", str(out), "--epochs", "2", "--only", "ft1-def", "ft3-ex1-64",
            "--image-size", "64", "--batch-size", "6"]
    first = study(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["key"] for r in runs] == ["ft1-def|k=0.1|e=2", "ft3-ex1-64|k=0.1|e=2"]
    for r in runs:
        assert 0 < r["direct"] <= 1 and 0 < r["fused"] <= 1 and r["train_images"] == 18
        assert {"lr:features", "lr:logits"} <= set(r)
    again = study(*args)  # finished runs are skipped
    assert again.returncode == 0 and (out / "runs.jsonl").read_text().count("\n") == 2
    report = study("--out", str(out), "--report", "--docs", str(tmp_path / "docs"))
    assert report.returncode == 0, report.stderr[-2000:]
    table = (tmp_path / "docs" / "strategies.md").read_text()
    assert "| ft3-ex1-64 |" in table and "Budget, the same for every run" in table
    assert (tmp_path / "docs" / "strategies.png").read_bytes()[:4] == b"\x89PNG"

"""The CPU precision chosen at load (vidconcept.model.cpu): bf16 only where the CPU has it
natively, fp32 elsewhere, and the same model version on every CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from vidconcept.errors import ModelError
from vidconcept.ingest import model_version
from vidconcept.model import ConceptModel, cpu

DEFAULT = ROOT / "models" / "default"  # cpu_precision: bf16

# (id, bundle asks, oneDNN, ONEDNN_MAX_CPU_ISA, CPU has AVX512-BF16, CPU has AMX, oneDNN bf16) -> precision
CASES = [
    ("fp32-bundle", "fp32", True, None, True, True, True, "fp32"),
    ("no-onednn", "bf16", False, None, True, False, True, "fp32"),
    ("isa-avx2", "bf16", True, "AVX2", True, False, True, "fp32"),
    ("isa-avx512-core", "bf16", True, "avx512_core", True, False, True, "fp32"),  # emulated bf16: slower
    ("no-bf16-instructions", "bf16", True, None, False, False, True, "fp32"),
    ("avx512-bf16", "bf16", True, None, True, False, True, "bf16"),
    ("avx512-bf16-limit", "bf16", True, "AVX512_CORE_BF16", True, False, True, "bf16"),
    ("amx", "bf16", True, "AVX512_CORE_AMX", False, True, True, "bf16"),
    ("onednn-says-no", "bf16", True, None, True, False, False, "fp32"),
]


@pytest.mark.parametrize("asks,onednn,limit,avx512_bf16,amx,mkldnn_bf16,expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_precision_chosen_from_what_the_cpu_has(monkeypatch, asks, onednn, limit, avx512_bf16, amx, mkldnn_bf16,
                                                expected):
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if limit:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(cpu, "onednn", lambda: onednn)
    monkeypatch.setattr(cpu, "_mkldnn_bf16", lambda: mkldnn_bf16)
    has = {"_is_avx512_bf16_supported": avx512_bf16, "_is_amx_tile_supported": amx}
    monkeypatch.setattr(cpu, "_cpu_has", lambda name: has[name])
    chosen = cpu.choose_precision(asks)
    assert chosen.precision == expected and chosen.reason


def test_one_version_on_every_cpu():
    """What a CPU chooses is not part of the model version: an index moved to a CPU that runs
    the bundle in the other precision is not rescored; the scores differ within the tolerance."""
    here = ConceptModel.load(DEFAULT, device="cpu")
    other = ConceptModel.load(DEFAULT, device="cpu", cpu_precision="fp32" if here.precision.precision == "bf16"
                              else "bf16" if cpu.bf16_possible() else "fp32")
    assert model_version(here) == model_version(other)
    assert here.backbone_digest == other.backbone_digest
    images = [np.random.default_rng(i).integers(0, 256, (288, 512, 3), dtype=np.uint8) for i in range(3)]
    assert np.abs(here.predict(images).scores - other.predict(images).scores).max() < cpu.SCORE_TOLERANCE


def test_bf16_where_onednn_has_none_is_a_model_error(monkeypatch):
    monkeypatch.setattr(cpu, "bf16_possible", lambda: False)
    with pytest.raises(ModelError, match="no bf16 convolution"):
        ConceptModel.load(DEFAULT, device="cpu", cpu_precision="bf16")


def test_a_bf16_bundle_runs_on_a_cpu_without_avx512():
    """oneDNN limited to AVX2 (most laptops): the bf16 bundle loads and scores in fp32, no crash."""
    code = ("import json, numpy as np; from vidconcept.model import ConceptModel; "
            f"m = ConceptModel.load({str(DEFAULT)!r}, device='cpu'); "
            "s = m.predict([np.zeros((288, 512, 3), np.uint8)]).scores; "
            "print(json.dumps({**m.runtime, 'finite': bool(np.isfinite(s).all())}))")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    runtime = json.loads(out.stdout.strip().splitlines()[-1])
    assert runtime["precision"] == "fp32" and "AVX2" in runtime["why"] and runtime["finite"]

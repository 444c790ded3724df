"""The precision a bundle's network runs in on this CPU, chosen at load from what the CPU has.

A bundle's ``cpu_precision: bf16`` allows bfloat16 on CPU; it runs where the CPU multiplies
bf16 natively (AVX512-BF16 or AMX, within oneDNN's ISA limit ``ONEDNN_MAX_CPU_ISA``), and fp32
everywhere else. Measured with ``benchmarks/model_speed.py --isa`` (docs/speed.md): native bf16
is 2.5-2.7x as fast as fp32; emulated on AVX-512 without BF16 it is slower than fp32; below AVX-512
oneDNN has no bf16 convolution at all. A torch without oneDNN runs the plain fp32 path.

The choice is not part of the model's version (:mod:`vidconcept.model.identity`): an index
moved to another CPU is not rescored; its scores differ from this CPU's by at most
:data:`SCORE_TOLERANCE`.

Example::

    choose_precision("bf16")   # CpuPrecision(precision='fp32', reason='... oneDNN is limited to AVX2 ...')
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

#: The largest difference of a concept score between fp32 and bf16 we promise (measured: 0.048 on the
#: shipped release's keyframes, ``benchmarks/model_speed.py``; tested in tests/test_model_precision.py).
SCORE_TOLERANCE = 0.05

#: ``ONEDNN_MAX_CPU_ISA`` values below the first with bf16 dot products (oneDNN's ``cpu_isa_t``).
_NO_NATIVE_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"})


@dataclass(frozen=True)
class CpuPrecision:
    """What the network runs in on this CPU and why (``vidconcept info`` shows it)."""

    precision: str
    reason: str


def isa_limit() -> str | None:
    """oneDNN's ISA limit from the environment (``ONEDNN_MAX_CPU_ISA``, or its old name), if set."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return value.strip().upper() if value and value.strip() else None


def onednn() -> bool:
    """Whether this torch runs convolutions through oneDNN (mkldnn) at all."""
    return bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def native_bf16() -> tuple[bool, str]:
    """``(whether oneDNN multiplies bf16 natively here, what decided it)``."""
    if not onednn():
        return False, "this torch has no oneDNN"
    limit = isa_limit()
    if limit in _NO_NATIVE_BF16:
        return False, f"oneDNN is limited to {limit} (ONEDNN_MAX_CPU_ISA), which has no bf16 instructions"
    amx = _cpu_has("_is_amx_tile_supported")
    if not (amx or _cpu_has("_is_avx512_bf16_supported")):
        return False, "this CPU has neither AVX512-BF16 nor AMX"
    if not _mkldnn_bf16():
        return False, "oneDNN reports no bf16 support"
    return True, "AMX" if amx else "AVX512-BF16"


def choose_precision(requested: str) -> CpuPrecision:
    """The precision to run a bundle asking for ``requested`` (``"fp32"`` or ``"bf16"``) in on this CPU."""
    if requested != "bf16":
        return CpuPrecision("fp32", "the bundle asks for fp32")
    native, why = native_bf16()
    if native:
        return CpuPrecision("bf16", f"the bundle allows bf16 and this CPU has it natively ({why})")
    return CpuPrecision("fp32", f"the bundle allows bf16, but {why}: fp32 is faster here")


def bf16_possible() -> bool:
    """Whether oneDNN can run bf16 convolutions here at all (natively or emulated)."""
    return onednn() and _mkldnn_bf16()


def _mkldnn_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _cpu_has(name: str) -> bool:
    probe = getattr(torch.cpu, name, None)  # private in torch.cpu; absent in older releases
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


__all__ = ["SCORE_TOLERANCE", "CpuPrecision", "bf16_possible", "choose_precision", "isa_limit", "native_bf16", "onednn"]

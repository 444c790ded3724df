"""CPU inference: a convolution and the ReLU/ReLU6 after it as one oneDNN call.

After batch norm is folded (``concept_model.fold_batch_norm``) an EfficientNet-Lite block is
convolution, then ReLU6 as a pass of its own over every activation: on CPU in bf16 that
clamp took 23 % of the network's time (``torch.profiler``, 288x512 keyframes). oneDNN
applies it inside the convolution instead (a *post-op* on the accumulator, before it is
rounded to bf16). Rounding is monotonic and 0 and 6 are exact in bf16, so clamping before
or after it gives the same numbers; :func:`fuse_conv_activations` is checked against the
unfused network by ``ConceptModel`` all the same, and dropped where they differ.
"""
from __future__ import annotations

import torch
from torch import nn

from vidconcept.model.efficientnet_lite import Conv2dSame

#: Activations oneDNN can run as a convolution's post-op: module type -> (attr, scalars).
_POST_OPS: dict[type, tuple[str, list]] = {nn.ReLU6: ("hardtanh", [0.0, 6.0]), nn.ReLU: ("relu", [])}


def available() -> bool:
    """Whether this torch has oneDNN's fused convolution (CPU builds with mkldnn)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class ConvAct(nn.Module):
    """``act(conv(x))`` in one oneDNN call; inference only (no autograd through it)."""

    def __init__(self, conv: nn.Conv2d, attr: str, scalars: list):
        super().__init__()
        self.conv, self.attr, self.scalars = conv, attr, scalars

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if isinstance(conv, Conv2dSame):
            x, padding = conv.pad(x), [0, 0]
        else:
            padding = list(conv.padding)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else conv.weight.dtype
        weight = conv.weight.to(dtype)  # what autocast does for F.conv2d (a no-op for bf16 weights)
        bias = conv.bias.to(dtype) if conv.bias is not None else None
        return torch.ops.mkldnn._convolution_pointwise(x.to(dtype), weight, bias, padding, list(conv.stride),
                                                       list(conv.dilation), conv.groups, self.attr, self.scalars, "")


def fuse_conv_activations(net: nn.Module) -> int:
    """Replace each convolution followed by its activation by a :class:`ConvAct`; returns how many.

    Pairs are siblings registered one after the other: a convolution (zero-padded, with a
    bias after folding), then the activation alone or in a ``Sequential`` of identities and
    it (what a folded ``BatchNormAct2d`` leaves), the layout of timm's blocks and ours.
    """
    fused = 0
    for parent in list(net.modules()):
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, act = parent._modules[first], parent._modules[second]
            post = _post_op(act)
            if post is None or type(conv) not in (nn.Conv2d, Conv2dSame) or conv.padding_mode != "zeros" or \
                    isinstance(conv.padding, str):
                continue
            parent._modules[first] = ConvAct(conv, *post)
            parent._modules[second] = nn.Identity()
            fused += 1
    return fused


def _post_op(module: nn.Module | None) -> tuple[str, list] | None:
    parts = list(module) if isinstance(module, nn.Sequential) else [module]
    acts = [m for m in parts if not isinstance(m, nn.Identity)]
    if len(acts) != 1 or type(acts[0]) not in _POST_OPS:
        return None
    return _POST_OPS[type(acts[0])]

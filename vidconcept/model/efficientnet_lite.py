"""EfficientNet-Lite0/1/2 in plain torch, state-dict compatible with timm's ``tf_efficientnet_lite*``.

Why not timm itself: importing timm imports torchvision, whose ``ops`` import
``torch._dynamo`` — 1.3–1.5 s of CPU at every start-up, a sixth of a 5-minute video's
whole ingest on 2 cores. The network is small and fixed, so it is spelled out here with
timm's module names (``conv_stem``, ``bn1``, ``blocks.i.j.conv_pw`` …), TensorFlow "same"
padding and batch norm with eps 1e-3 and the activation inside (timm's ``BatchNormAct2d``);
the same weights give the same outputs as timm's model (tested against it).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: Per stage: block kind, repeats, kernel, stride, expansion, output channels (timm's arch_def).
_STAGES = [("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40), ("ir", 3, 3, 2, 6, 80),
           ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192), ("ir", 1, 3, 1, 6, 320)]
#: variant → (channel multiplier, depth multiplier, input size, crop_pct), as timm's pretrained configs.
VARIANTS = {0: (1.0, 1.0, 224, 0.875), 1: (1.0, 1.1, 240, 0.882), 2: (1.1, 1.2, 260, 0.890)}
BN_EPS = 1e-3


def make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """timm's channel rounding: nearest multiple of ``divisor``, never more than 10 % down."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < round_limit * v else new_v


class Conv2dSame(nn.Conv2d):
    """Convolution with TensorFlow's "same" padding (asymmetric when the stride is 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` zero-padded as TensorFlow's "same" asks (the extra row and column after)."""
        ih, iw = x.shape[-2:]
        pw, ph = [max((math.ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)
                  for i, k, s, d in ((iw, self.kernel_size[1], self.stride[1], self.dilation[1]),
                                     (ih, self.kernel_size[0], self.stride[0], self.dilation[0]))]
        if not (pw or ph):
            return x
        left, top = pw // 2, ph // 2
        right, bottom = pw - left, ph - top
        if torch.is_grad_enabled() or x.dim() != 4:
            return F.pad(x, [left, right, top, bottom])
        return pad_zeros(x, left, right, top, bottom)


def pad_zeros(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """``F.pad(x, [left, right, top, bottom])`` of an ``NCHW`` tensor in its memory format, zeroing
    the border only: ``F.pad`` fills the whole output first, and on CPU that fill made padding
    15 % of an EfficientNet-Lite's inference time at 288x512 (this took 25-70 % less per call
    there, measured by hand on bf16 channels-last tensors; the most on the largest)."""
    n, c, h, w = x.shape
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = torch.empty((n, c, h + top + bottom, w + left + right), dtype=x.dtype, device=x.device, memory_format=fmt)
    out[:, :, :top].zero_()
    out[:, :, top + h:].zero_()
    out[:, :, top:top + h, :left].zero_()
    out[:, :, top:top + h, left + w:].zero_()
    out[:, :, top:top + h, left:left + w].copy_(x)
    return out


def conv(in_chs: int, out_chs: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """Static symmetric padding where "same" allows it (stride 1), else :class:`Conv2dSame`."""
    if stride == 1:
        return nn.Conv2d(in_chs, out_chs, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
    return Conv2dSame(in_chs, out_chs, kernel, stride, 0, groups=groups, bias=False)


class BatchNormAct2d(nn.BatchNorm2d):
    """Batch norm followed by an activation (ReLU6 or none), with timm's parameter names."""

    def __init__(self, channels: int, act: bool = True):
        super().__init__(channels, eps=BN_EPS)
        self.drop = nn.Identity()
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int):
        super().__init__()
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_dw = conv(in_chs, in_chs, kernel, stride, groups=in_chs)
        self.bn1 = BatchNormAct2d(in_chs)
        self.conv_pw = conv(in_chs, out_chs, 1)
        self.bn2 = BatchNormAct2d(out_chs, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return y + x if self.has_skip else y


class InvertedResidual(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = make_divisible(in_chs * expansion)
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = conv(in_chs, mid, 1)
        self.bn1 = BatchNormAct2d(mid)
        self.conv_dw = conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = BatchNormAct2d(mid)
        self.conv_pwl = conv(mid, out_chs, 1)
        self.bn3 = BatchNormAct2d(out_chs, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn3(self.conv_pwl(self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))))
        return y + x if self.has_skip else y


class EfficientNetLite(nn.Module):
    """The network: ``conv_stem``/``bn1``, ``blocks`` (7 stages), ``conv_head``/``bn2``, pooling, classifier."""

    def __init__(self, variant: int = 0, num_classes: int = 1000):
        super().__init__()
        width, depth, size, crop_pct = VARIANTS[variant]
        self.conv_stem = conv(3, 32, 3, 2)
        self.bn1 = BatchNormAct2d(32)
        stages, in_chs = [], 32
        for i, (kind, repeats, kernel, stride, expansion, out) in enumerate(_STAGES):
            out = make_divisible(out * width)
            if 0 < i < len(_STAGES) - 1:  # the first and last stages keep their depth
                repeats = max(1, math.ceil(repeats * depth))
            blocks = []
            for j in range(repeats):
                s = stride if j == 0 else 1
                blocks.append(DepthwiseSeparableConv(in_chs, out, kernel, s) if kind == "ds"
                              else InvertedResidual(in_chs, out, kernel, s, expansion))
                in_chs = out
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.num_features = 1280
        self.conv_head = conv(in_chs, self.num_features, 1)
        self.bn2 = BatchNormAct2d(self.num_features)
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.data_config = {"input_size": [3, size, size], "mean": [0.5] * 3, "std": [0.5] * 3,
                            "interpolation": "bicubic", "crop_pct": crop_pct, "crop_mode": "center"}
        for m in self.modules():  # timm's (Google's) initialisation, for weights="none"
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.weight.size(0))
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))
        return self.classifier(self.global_pool(x))

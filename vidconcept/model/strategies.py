"""Fine-tuning and extension strategies of Pittaras et al. (MMM 2017), built on the backbone API.

"Comparison of Fine-tuning and Extension Strategies for Deep Convolutional Neural
Networks" names three families, which :func:`parse_strategy` reads from strings:

* ``ft1-def``: replace the classification layer with a new concept layer; fine-tune all.
* ``ft2-reN``: also re-initialise the N-1 layers below the classifier
  (:meth:`Backbone.layers` defines a backbone's layers: its parametrised stages, e.g. the
  blocks of an EfficientNet or ResNet, ``fc6``/``fc7`` of AlexNet, then the classifier).
* ``ft3-ex1-D`` / ``ft3-ex2-D``: insert one or two fully connected layers of size D
  (64…4096, ReLU, dropout 0.5) between the pooled features and the new concept layer.

Pretrained layers learn with ``lr * lr_mult`` (the paper's k, best 0.1); new or
re-initialised layers with ``lr``. Example::

    spec = parse_strategy("ft3-ex1-512")
    net = spec.build(create_backbone("tf_efficientnet_lite0"), num_concepts=41)
    outputs = net.outputs(batch)          # {"features": …, "ext1": …, "logits": …}
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from vidconcept.errors import UsageError, unknown
from vidconcept.model.backbones import Backbone

#: Size limits of an extension layer, as in the paper.
EXTENSION_SIZES = (64, 4096)
EXTENSION_DROPOUT = 0.5


@dataclass(frozen=True)
class StrategySpec:
    """A parsed strategy name.

    Attributes:
        name: canonical name, e.g. ``"ft2-re3"``.
        reinit_layers: layers below the classifier that are re-initialised (FT2-reN: N-1).
        extension: sizes of the inserted fully connected layers (FT3-ex).
    """

    name: str
    reinit_layers: int = 0
    extension: tuple[int, ...] = ()

    def build(self, backbone: Backbone, num_concepts: int) -> "ConceptNet":
        """Turn ``backbone`` (with pretrained weights) into a concept network of this strategy."""
        return ConceptNet(backbone, self, num_concepts)


_PATTERNS: dict[str, tuple[str, Callable[[re.Match], StrategySpec]]] = {}


def register_strategy(template: str, pattern: str) -> Callable:
    """Register a parser for names matching ``pattern``; ``template`` is shown in listings."""

    def wrap(parser: Callable[[re.Match], StrategySpec]) -> Callable:
        if template in _PATTERNS:
            raise ValueError(f"strategy {template!r} is already registered")
        _PATTERNS[template] = (pattern, parser)
        return parser

    return wrap


def list_strategies() -> list[str]:
    """Strategy name templates (N and D stand for numbers)."""
    return list(_PATTERNS)


def parse_strategy(name: str) -> StrategySpec:
    """Parse ``ft1-def``, ``ft2-reN`` or ``ft3-ex{1,2}-D``; anything else raises with suggestions."""
    for template, (pattern, parser) in _PATTERNS.items():
        match = re.fullmatch(pattern, name.strip().lower())
        if match:
            return parser(match)
    raise unknown("strategy", name, list_strategies())


@register_strategy("ft1-def", r"ft1-def")
def _ft1(match: re.Match) -> StrategySpec:
    return StrategySpec("ft1-def")


@register_strategy("ft2-reN", r"ft2-re(\d+)")
def _ft2(match: re.Match) -> StrategySpec:
    n = int(match.group(1))
    if n < 1:
        raise UsageError(f"strategy ft2-re{n}: N counts the classifier, so it must be at least 1")
    return StrategySpec(f"ft2-re{n}", reinit_layers=n - 1)


def _extension(match: re.Match, count: int) -> StrategySpec:
    size = int(match.group(1))
    low, high = EXTENSION_SIZES
    if not low <= size <= high:
        raise UsageError(f"strategy ft3-ex{count}-{size}: the extension size must be {low}…{high}")
    return StrategySpec(f"ft3-ex{count}-{size}", extension=(size,) * count)


register_strategy("ft3-ex1-D", r"ft3-ex1-(\d+)")(lambda m: _extension(m, 1))
register_strategy("ft3-ex2-D", r"ft3-ex2-(\d+)")(lambda m: _extension(m, 2))


def reset_parameters(module: nn.Module) -> None:
    """Re-initialise every sub-module that knows how (conv, linear, batch norm)."""
    for sub in module.modules():
        if hasattr(sub, "reset_parameters"):
            sub.reset_parameters()


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """Average over spatial dimensions so every layer output is a vector per image."""
    return x.flatten(2).mean(-1) if x.ndim == 4 else x.flatten(1)


class ConceptNet(nn.Module):
    """Backbone stages, optional extension layers and the concept layer.

    :meth:`outputs` returns the three last layers' outputs the LR detectors are trained
    on (``lr_layers``): for FT1/FT2 the pooled output of the backbone layer below the
    pre-logits one (e.g. ``b6_0`` of EfficientNet, ``fc6`` of AlexNet), the pooled
    ``features`` and the ``logits``; for FT3-ex1 ``features``, ``ext1``, ``logits``; for
    FT3-ex2 ``ext1``, ``ext2``, ``logits``.
    """

    def __init__(self, backbone: Backbone, spec: StrategySpec, num_concepts: int):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        backbone.classifier = nn.Identity()  # ImageNet logits are not needed any more
        self.new_layers = self._reinitialise(spec.reinit_layers)
        self.extension = nn.ModuleList(self._extension_layers(backbone.num_features, spec.extension))
        width = spec.extension[-1] if spec.extension else backbone.num_features
        self.concept_layer = nn.Linear(width, num_concepts)
        self.tap = self._tap_index()
        self.lr_layers = self._lr_layer_names()

    def _reinitialise(self, count: int) -> list[str]:
        layers = self.backbone.layers()[:-1]  # the classifier is replaced anyway
        if count > len(layers):
            raise UsageError(f"{self.spec.name}: backbone {self.backbone.name} has only {len(layers) + 1} layers")
        chosen = layers[len(layers) - count:] if count else []
        for _, module in chosen:
            reset_parameters(module)
        return [name for name, _ in chosen]

    @staticmethod
    def _extension_layers(width: int, sizes: tuple[int, ...]) -> list[nn.Module]:
        blocks = []
        for size in sizes:
            blocks.append(nn.Sequential(nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(EXTENSION_DROPOUT)))
            width = size
        return blocks

    def _tap_index(self) -> int:
        """Index of the stage whose output is the "layer below the pre-logits layer"."""
        names = list(self.backbone.stages)
        param_stages = [name for name, _ in self.backbone.layers()[:-1]]
        return names.index(param_stages[-2])

    def _lr_layer_names(self) -> list[str]:
        ext = [f"ext{i + 1}" for i in range(len(self.extension))]
        below = [list(self.backbone.stages)[self.tap], "features"] + ext
        return below[-2:] + ["logits"]

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Concept logits; ``start`` skips backbone stages whose output ``x`` already is."""
        h = self.backbone.forward_stages(x, start)
        for block in self.extension:
            h = block(h)
        return self.concept_layer(h)

    def outputs(self, x: torch.Tensor, start: int = 0) -> dict[str, torch.Tensor]:
        """Pooled ``features``, the ``lr_layers`` outputs and ``logits`` in one pass."""
        out = {}
        if start <= self.tap:
            x = self.backbone.forward_stages(x, start, self.tap + 1)
            out[list(self.backbone.stages)[self.tap]] = global_pool(x)
            start = self.tap + 1
        h = out["features"] = self.backbone.forward_stages(x, start)
        for i, block in enumerate(self.extension):
            h = out[f"ext{i + 1}"] = block(h)
        out["logits"] = self.concept_layer(h)
        return out

    def parameter_groups(self, lr: float, lr_mult: float) -> list[dict]:
        """Optimiser groups: pretrained layers at ``lr * lr_mult``, new ones at ``lr``."""
        new_ids = {id(p) for m in [self.extension, self.concept_layer] for p in m.parameters()}
        for name in self.new_layers:
            new_ids |= {id(p) for p in self.backbone.stages[name].parameters()}
        params = [p for p in self.parameters() if p.requires_grad]
        new = [p for p in params if id(p) in new_ids]
        old = [p for p in params if id(p) not in new_ids]
        return [{"params": old, "lr": lr * lr_mult, "name": "pretrained"}, {"params": new, "lr": lr, "name": "new"}]

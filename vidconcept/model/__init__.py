"""Concept models: backbones, fine-tuning strategies, LR detectors and bundles.

Example::

    from vidconcept.model import ConceptModel
    model = ConceptModel.load()            # models/default unless $VIDCONCEPT_MODEL says otherwise
    prediction = model.predict(images)     # .scores [N, C], .features [N, D] (L2-normalised)
"""
from __future__ import annotations

import importlib

#: Exported name -> the module that defines it. Loaded on first use (PEP 562), so that importing a
#: torch-free part such as :mod:`vidconcept.model.identity` does not import torch.
_EXPORTS = {
    "Backbone": "backbones", "create_backbone": "backbones", "list_backbones": "backbones",
    "register_backbone": "backbones", "BundleConfig": "bundle", "read_config": "bundle", "save_bundle": "bundle",
    "ConceptModel": "concept_model", "Prediction": "concept_model", "ConceptNet": "strategies",
    "StrategySpec": "strategies", "list_strategies": "strategies", "parse_strategy": "strategies",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value

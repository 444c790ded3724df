"""Concept models: backbones, fine-tuning strategies, LR detectors and bundles.

Example::

    from vidconcept.model import ConceptModel
    model = ConceptModel.load()            # models/default unless $VIDCONCEPT_MODEL says otherwise
    prediction = model.predict(images)     # .scores [N, C], .features [N, D] (L2-normalised)
"""
from vidconcept.model.backbones import Backbone, create_backbone, list_backbones, register_backbone
from vidconcept.model.bundle import BundleConfig, read_config, save_bundle
from vidconcept.model.concept_model import ConceptModel, Prediction
from vidconcept.model.strategies import ConceptNet, StrategySpec, list_strategies, parse_strategy

__all__ = [
    "Backbone", "BundleConfig", "ConceptModel", "ConceptNet", "Prediction", "StrategySpec", "create_backbone",
    "list_backbones", "list_strategies", "parse_strategy", "read_config", "register_backbone", "save_bundle",
]

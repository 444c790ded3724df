"""Metrics, the base layer: AP, MAP and inferred AP (:mod:`~vidconcept.metrics.ap`) and shot-boundary
scoring (:mod:`~vidconcept.metrics.shots`)."""

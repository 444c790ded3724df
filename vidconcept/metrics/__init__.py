"""Metrics, the base layer: shot-boundary scoring (:mod:`~vidconcept.metrics.shots`)."""

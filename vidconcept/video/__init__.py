"""Video decoding, shot detection and keyframes (one decode pass per video).

Example::

    from vidconcept.video import ShotScanner, save_keyframe
    for shot, keyframe in ShotScanner("clip.mp4"):
        save_keyframe(keyframe, Path("keyframes") / f"{shot.index:05d}.jpg")
"""
from vidconcept.video.decode import VideoInfo
from vidconcept.video.detectors import DEFAULT_DETECTOR, get_detector, list_detectors
from vidconcept.video.keyframes import save_keyframe
from vidconcept.video.shots import ScanResult, Shot, ShotScanner, detect_shots

__all__ = [
    "DEFAULT_DETECTOR",
    "ScanResult",
    "Shot",
    "ShotScanner",
    "VideoInfo",
    "detect_shots",
    "get_detector",
    "list_detectors",
    "save_keyframe",
]

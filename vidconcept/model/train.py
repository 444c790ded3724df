"""Fine-tune a backbone for a concept pool, fit LR detectors and write a bundle.

Training follows Pittaras et al. (MMM 2017): a strategy (:mod:`.strategies`) turns an
ImageNet backbone into a concept network, which is trained with a *masked* multi-label
binary cross-entropy (unknown labels contribute nothing), pretrained layers at
``lr * lr_mult``. Then one logistic regression per concept and layer is fitted on the
training images' layer outputs (:mod:`.detectors`).

*Cached stages* (``cache_stages=K``): on CPUs a full fine-tune is slow, so the first K
backbone stages can be frozen; their outputs are computed once per image (plain and
horizontally flipped, fp16, in memory) and each epoch only runs the remaining stages. It
is fine-tuning of the last layers (the paper's strategies applied to the top of the
network); the bundle records K.

*Mixed precision*: on CUDA the network runs under fp16 autocast (with loss scaling); on CPUs
with native bfloat16 (AVX512-BF16 or AMX) under bf16 autocast: a full fine-tune of
``tf_efficientnet_lite0`` at 224 px ran 1.6x faster than fp32 on such a CPU, while with frozen
first stages bf16 was 10 % slower (``benchmarks/train_speed.py``). ``precision="fp32"`` turns it
off. Example::

    from vidconcept.model.train import train
    bundle = train("tf_efficientnet_lite0", "ft3-ex1-512", ["voc:../shared/data/voc2007"], Path("models/voc"),
                   epochs=4, cache_stages=13)
"""
from __future__ import annotations

import logging
import random
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vidconcept.config import resolve_device
from vidconcept.data import LabelledImages, merge, open_dataset
from vidconcept.errors import UsageError
from vidconcept.model.backbones import backbone_info, create_backbone
from vidconcept.model.bundle import WEIGHTS_FILE, BundleConfig, load_weights, read_config, save_bundle
from vidconcept.model.card import write_model_card
from vidconcept.model.concept_model import eval_transform, same_size_batches
from vidconcept.model.detectors import LayerDetectors, fit_layers, parse_c
from vidconcept.model.strategies import ConceptNet, parse_strategy

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
PRECISIONS = ("auto", "fp32")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (stored in the bundle's ``training``)."""

    backbone: str
    strategy: str
    datasets: list[str]
    epochs: int = 4
    lr_mult: float = 0.1
    batch_size: int = 32
    lr: float = 0.01
    image_size: int | None = None
    seed: int = 0
    split: str = "train"
    cache_stages: int = 0
    workers: int = 0
    weights: str = "pretrained"  # or a state_dict file, or "none" (random init, only when asked)
    crop_pct: float | None = None  # inference centre crop; 1.0 keeps the whole shorter side
    crop_mode: str | None = None  # "center" (square) or "none" (whole image) at inference
    init: str | None = None  # a bundle whose network training starts from (same backbone, strategy, concepts)
    train_size: int | None = None  # training crop size; default: the inference input size
    precision: str = "auto"  # "auto" (fp16 on CUDA, bf16 on CPUs that have it) or "fp32"
    repeat: dict[str, int] = field(default_factory=dict)  # data set spec -> times its photos appear in an epoch
    command: str = field(default_factory=lambda: shlex.join(sys.argv))


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over judged concepts (``mask`` = 1), averaged over images.

    Unknown entries give exactly zero gradient. Normalising by images rather than by judged
    entries (as Caffe's sigmoid cross-entropy loss used in the paper does) keeps each
    concept's gradient independent of the size of the concept pool; a mean over all entries
    would shrink the effective learning rate of a 40-concept pool 40-fold.
    """
    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (loss * mask).sum() / max(len(logits), 1)


def init_concept_layer(net: ConceptNet, old: list[str], new: list[str],
                       aliases: dict[str, str] | None = None) -> ConceptNet:
    """``net`` with a concept layer for ``new``: the rows of the concepts ``old`` has (by name or
    alias) copied, the others freshly initialised; every other layer as it is.

    Why: a release that widens the vocabulary starts from the previous network, so what it
    learnt of the old concepts is kept while the new ones are learnt.
    """
    from vidconcept.model.names import resolve

    layer = net.concept_layer
    fresh = nn.Linear(layer.in_features, len(new)).to(layer.weight.device, layer.weight.dtype)
    copied = 0
    with torch.no_grad():
        for j, concept in enumerate(new):
            source = resolve(concept, old, aliases)
            if source is not None:
                fresh.weight[j] = layer.weight[old.index(source)]
                fresh.bias[j] = layer.bias[old.index(source)]
                copied += 1
    net.concept_layer = fresh
    log.info("concept layer: %d of %d concepts start from the previous network's rows", copied, len(new))
    return net


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a generator for shuffling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train_transform(data_config: dict, size: int | None = None):
    """Augmentation derived from the data config: random resized crop (``size``, default the
    input size), flip, normalise."""
    from torchvision import transforms as T

    size = size or data_config["input_size"][-1]
    interpolation = T.InterpolationMode(data_config["interpolation"])
    return T.Compose([T.RandomResizedCrop(size, scale=(0.35, 1.0), interpolation=interpolation),
                      T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(data_config["mean"], data_config["std"])])


class ImageLabels(Dataset):
    """(image tensor, labels, mask) rows of a :class:`LabelledImages` through ``transform``."""

    def __init__(self, data: LabelledImages, transform):
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        image = self.transform(self.data.load_image(i))
        return image, torch.from_numpy(self.data.labels[i]), torch.from_numpy(self.data.mask[i])


def _loader(data: LabelledImages, transform, cfg: TrainConfig, shuffle: bool, generator=None,
            pin: bool = False, persistent: bool = False) -> DataLoader:
    return DataLoader(ImageLabels(data, transform), batch_size=cfg.batch_size, shuffle=shuffle,
                      num_workers=cfg.workers, generator=generator, drop_last=False, pin_memory=pin,
                      persistent_workers=persistent and cfg.workers > 0)


@torch.inference_mode()
def cache_stage_outputs(net: ConceptNet, loader: DataLoader, stop: int, device: str) -> list[torch.Tensor]:
    """Outputs of backbone stages ``[:stop]`` for every image, plain and flipped (fp16, on CPU)."""
    from tqdm.auto import tqdm

    net.eval()
    plain, flipped = [], []
    for x, _, _ in tqdm(loader, desc="cache stages", unit="batch"):
        x = x.to(device)
        plain.append(net.backbone.forward_stages(x, 0, stop).half().cpu())
        flipped.append(net.backbone.forward_stages(x.flip(-1), 0, stop).half().cpu())
    return [torch.cat(plain), torch.cat(flipped)]


class Trainer:
    """One training run: network, optimiser, schedule, data (raw images or cached stages)."""

    def __init__(self, cfg: TrainConfig, data: LabelledImages, out: Path, device: str,
                 rows: np.ndarray | None = None):
        self.cfg, self.data, self.out, self.device = cfg, data, out, device
        self.rows = np.arange(len(data)) if rows is None else np.asarray(rows)  # an epoch: these rows of data
        self.generator = seed_everything(cfg.seed)
        backbone = create_backbone(cfg.backbone, "none" if cfg.init else cfg.weights)
        self.data_config = dict(backbone.data_config)
        start = self._starting_bundle(data) if cfg.init else None
        if start:
            self.data_config = dict(start.data_config)
        if cfg.image_size:
            self.data_config["input_size"] = [3, cfg.image_size, cfg.image_size]
        if cfg.crop_pct:
            self.data_config["crop_pct"] = cfg.crop_pct
        if cfg.crop_mode:
            self.data_config["crop_mode"] = cfg.crop_mode
        self.net = parse_strategy(cfg.strategy).build(backbone, len(data.concepts))
        if start:
            load_weights(self.net, Path(cfg.init) / start.weights["file"])
        self.net = self.net.to(device)
        self._check_cache_depth()
        self.cache: list[torch.Tensor] = []
        self._train_loader: DataLoader | None = None  # built once: its workers persist across epochs
        self.optimizer = torch.optim.SGD(self._parameter_groups(), lr=cfg.lr, momentum=MOMENTUM,
                                         weight_decay=WEIGHT_DECAY, nesterov=True)
        steps = cfg.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=[g["lr"] for g in self.optimizer.param_groups], total_steps=max(steps, 1),
            pct_start=0.1)
        self.epoch, self.losses = 0, []
        self.device_type = "cuda" if device.startswith("cuda") else "cpu"
        self.amp_dtype = autocast_dtype(device, cfg.precision)
        # channels-last: tensor cores on CUDA, oneDNN's faster depthwise convolutions on CPU
        self.net = self.net.to(memory_format=torch.channels_last)
        if self.device_type == "cuda":  # cuDNN picks kernels once per input size
            torch.backends.cudnn.benchmark = True
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.rows) // self.cfg.batch_size)

    def _starting_bundle(self, data: LabelledImages) -> BundleConfig:
        """The config of ``cfg.init``, checked to describe the network this run builds."""
        config = read_config(Path(self.cfg.init))
        mismatch = [what for what, theirs, ours in [("backbone", config.backbone, self.cfg.backbone),
                                                     ("strategy", config.strategy, self.cfg.strategy),
                                                     ("concepts", config.concepts, list(data.concepts))] if theirs != ours]
        if mismatch:
            raise UsageError(f"cannot start from {self.cfg.init}: its {', '.join(mismatch)} differ from this run's "
                             f"({self.cfg.backbone}, {self.cfg.strategy}, {len(data.concepts)} concepts)")
        if "file" not in config.weights:
            raise UsageError(f"cannot start from {self.cfg.init}: it has no weights file of its own")
        return config

    def autocast(self):
        """The mixed-precision context of training steps (a no-op at fp32)."""
        return torch.autocast(self.device_type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def _check_cache_depth(self) -> None:
        k = self.cfg.cache_stages
        if not 0 <= k <= self.net.tap:
            raise UsageError(f"cache_stages must be 0…{self.net.tap} for {self.cfg.backbone} "
                             f"(the LR detectors need the output of stage {list(self.net.backbone.stages)[self.net.tap]})")
        for module in list(self.net.backbone.stages.values())[:k]:
            module.requires_grad_(False)

    def _parameter_groups(self) -> list[dict]:
        return [g for g in self.net.parameter_groups(self.cfg.lr, self.cfg.lr_mult) if g["params"]]

    # ---------------------------------------------------------------- checkpoints
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_DIR / "last.pt"

    def save_checkpoint(self) -> None:
        path = self.checkpoint_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "losses": self.losses,
                 "rng": torch.get_rng_state(), "generator": self.generator.get_state()}
        torch.save(state, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)  # never leave a half-written checkpoint

    def load_checkpoint(self) -> None:
        path = self.checkpoint_path()
        if not path.is_file():
            log.warning("no checkpoint at %s: starting from epoch 0", path)
            return
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.losses = state["epoch"], state["losses"]
        torch.set_rng_state(state["rng"])
        self.generator.set_state(state["generator"])
        log.info("resumed from %s after epoch %d", path, self.epoch)

    # ---------------------------------------------------------------- training
    def prepare_cache(self) -> None:
        """Compute (or, when resuming, reload) the frozen stages' outputs."""
        if not self.cfg.cache_stages or self.cache:
            return
        path = self.out / CHECKPOINT_DIR / f"stages-{self.cfg.cache_stages}.pt"
        if path.is_file():
            self.cache = torch.load(path, weights_only=True)
            log.info("reloaded cached stage outputs from %s", path)
            return
        # training inputs are square (as the random crops of an uncached run), whatever crop the bundle infers with
        square = eval_transform({**self.data_config, "crop_mode": "center"})
        loader = _loader(self.data, square, self.cfg, shuffle=False)
        self.cache = cache_stage_outputs(self.net, loader, self.cfg.cache_stages, self.device)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.cache, path)  # a resumed run skips the slowest part

    def _freeze_pretrained_batch_norm(self) -> None:
        """Keep pretrained batch-norm layers on their ImageNet statistics (their affine weights still learn).

        Re-estimating them from fine-tuning batches measurably hurt the LR detectors: with no
        weight update at all (lr 1e-6, one epoch, scene15) LR-on-features MAP fell from 0.951
        to 0.915. Re-initialised stages (FT2-reN) do learn their statistics.
        """
        for name, stage in self.net.backbone.stages.items():
            if name not in self.net.new_layers:
                for module in stage.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()

    def batches(self):
        """Training batches: augmented images, or cached stage outputs (random flip variant)."""
        if not self.cache:
            if self._train_loader is None:
                epoch = self.data if len(self.rows) == len(self.data) else self.data.subset(self.rows)
                self._train_loader = _loader(epoch, train_transform(self.data_config, self.cfg.train_size),
                                             self.cfg, True, self.generator, pin=self.device_type == "cuda",
                                             persistent=True)
            yield from self._train_loader
            return
        labels, mask = torch.from_numpy(self.data.labels), torch.from_numpy(self.data.mask)
        order = torch.from_numpy(self.rows)[torch.randperm(len(self.rows), generator=self.generator)]
        for start in range(0, len(order), self.cfg.batch_size):
            rows = order[start:start + self.cfg.batch_size]
            flips = torch.randint(0, 2, (len(rows),), generator=self.generator)
            x = torch.stack([self.cache[f][r] for f, r in zip(flips.tolist(), rows.tolist())]).float()
            yield x, labels[rows], mask[rows]

    def train_epoch(self) -> float:
        from tqdm.auto import tqdm

        self.net.train()
        self._freeze_pretrained_batch_norm()
        total, count = 0.0, 0
        for x, labels, mask in tqdm(self.batches(), desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", unit="batch",
                                    total=self.steps_per_epoch):
            x, labels, mask = (t.to(self.device, non_blocking=True) for t in (x, labels, mask))
            with self.autocast():
                loss = masked_bce(self.net(_channels_last(x), start=self.cfg.cache_stages).float(), labels, mask)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            total, count = total + float(loss.detach()) * len(x), count + len(x)
        return total / max(count, 1)

    def fit(self) -> None:
        import time

        self.prepare_cache()
        while self.epoch < self.cfg.epochs:
            started = time.perf_counter()
            loss = self.train_epoch()
            self.epoch += 1
            self.losses.append(round(loss, 6))
            log.info("epoch %d/%d: masked BCE %.4f (%.1f s)", self.epoch, self.cfg.epochs, loss,
                     time.perf_counter() - started)
            self.save_checkpoint()
        self._train_loader = None  # let its worker processes go

    # ---------------------------------------------------------------- detectors
    @torch.inference_mode()
    def layer_outputs(self, data: LabelledImages | None = None) -> dict[str, np.ndarray]:
        """The LR layers' outputs for the training images, or for ``data``, preprocessed as at inference."""
        self.net.eval()
        source = self.data if data is None else data
        parts: dict[str, np.ndarray] = {}

        def run(rows, x: torch.Tensor, start: int = 0) -> None:
            # as inference runs: fp16 autocast on CUDA, fp32 on CPU
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.device_type == "cuda"):
                out = self.net.outputs(_channels_last(x.to(self.device, non_blocking=True)), start=start)
            for name in self.net.lr_layers:
                value = out[name].float().cpu().numpy()
                parts.setdefault(name, np.empty((len(source), *value.shape[1:]), np.float32))[rows] = value

        if data is None and self.cache and self.data_config.get("crop_mode", "center") == "center":
            for s in range(0, len(source), self.cfg.batch_size):  # the cached plain crops are what inference sees
                run(slice(s, s + self.cfg.batch_size), self.cache[0][s:s + self.cfg.batch_size].float(), self.cfg.cache_stages)
        else:
            images = DataLoader(ImageLabels(source, eval_transform(self.data_config)), batch_size=None,
                                num_workers=self.cfg.workers)  # one image at a time: sizes may differ
            for rows, x in same_size_batches(((i, x) for i, (x, _, _) in enumerate(images)), self.cfg.batch_size):
                run(rows, x)
        return parts

    def fit_detectors(self, c: float | str | None = None) -> tuple[list[LayerDetectors], dict[str, float]]:
        """LR detectors on the training images' layer outputs, and the C of each layer (see :func:`fit_layers`)."""
        return fit_layers(self.layer_outputs(), self.data.labels, self.data.mask, c, self.cfg.seed)


def train(backbone: str, strategy: str, datasets: list[str], out: Path, epochs: int = 4, lr_mult: float = 0.1,
          batch_size: int = 32, lr: float = 0.01, image_size: int | None = None, seed: int = 0,
          device: str | None = None, resume: bool = False, split: str = "train", cache_stages: int = 0,
          workers: int = 0, detectors: bool = True, weights: str = "pretrained",
          crop_pct: float | None = None, crop_mode: str | None = None, init: str | Path | None = None,
          train_size: int | None = None, precision: str = "auto", repeat: dict[str, int] | None = None,
          detector_c: float | str | None = None) -> Path:
    """Fine-tune ``backbone`` with ``strategy`` on ``datasets`` and write a bundle to ``out``.

    Args:
        backbone: registry name (:func:`list_backbones`).
        strategy: ``ft1-def``, ``ft2-reN``, ``ft3-ex1-D`` or ``ft3-ex2-D``.
        datasets: data set specs; their concept union is the concept pool.
        out: bundle folder (checkpoints go to ``out/checkpoints`` and are removed at the end).
        epochs, lr, lr_mult, batch_size: SGD (Nesterov momentum, one-cycle schedule);
            pretrained layers learn at ``lr * lr_mult``.
        image_size: square input size; default: the backbone's.
        train_size: size of the random training crops; default: ``image_size``. Training a
            little below the inference size suits whole-image inference (objects in random
            crops look larger than in whole images) and costs less.
        crop_pct: centre crop at inference (timm's meaning); 1.0 keeps the whole shorter side,
            which suits multi-label photos whose objects reach the edges. Default: the backbone's.
        crop_mode: ``"center"`` (a square crop) or ``"none"``: the whole image at inference, shorter
            side at ``image_size`` (training crops stay square). Default: the backbone's.
        init: a fine-tuned bundle to start from instead of the backbone's weights (the same
            backbone, strategy and concept pool), e.g. to train it further or on other photos;
            its preprocessing is kept unless ``image_size`` / ``crop_*`` change it.
        seed: seeds shuffling, augmentation and initialisation (deterministic on CPU).
        device: ``None`` → :func:`config.resolve_device`.
        resume: continue from the last epoch checkpoint in ``out``.
        split: split of the data sets to train on.
        cache_stages: freeze and cache the first K backbone stages (see module docstring).
        workers: DataLoader worker processes.
        detectors: fit the LR detectors (and use fused scores) after training.
        weights: the backbone's starting weights: ``"pretrained"``, a state_dict file
            (e.g. GoogLeNet or AlexNet weights for the paper's networks) or ``"none"``.
        precision: ``"auto"``: mixed precision where the hardware has it (module docstring);
            ``"fp32"``: none.
        repeat: ``{spec: n}``: the photos of data set ``spec`` appear ``n`` times in each epoch of
            network training (a small set among large ones gets more of the gradient); the LR
            detectors still see each photo once.
        detector_c: the LR detectors' inverse regularisation: a number (default 1, sklearn's and
            the paper's) or ``"cv"``: each layer's own C by 3-fold cross-validation on the
            training photos (:func:`.detectors.choose_c`; adds a few fits per layer).

    Returns:
        ``out``, a bundle loadable with :meth:`ConceptModel.load`.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0 or lr_mult < 0 or not (crop_pct is None or 0 < crop_pct <= 1):
        raise UsageError("epochs and batch_size must be ≥ 1, lr > 0, lr_mult ≥ 0 and crop_pct in (0, 1]")
    if train_size is not None and train_size < 32:
        raise UsageError(f"train_size must be at least 32 pixels, got {train_size}")
    _check_crop_mode(crop_mode)
    repeat = _check_repeat(repeat or {}, list(datasets))
    detector_c = parse_c(detector_c)
    autocast_dtype("cpu", precision)  # checks the name
    backbone_info(backbone), parse_strategy(strategy)  # cheap name checks before any data is read
    cfg = TrainConfig(backbone, strategy, list(datasets), epochs, lr_mult, batch_size, lr, image_size, seed, split,
                      cache_stages, workers, str(weights), crop_pct, crop_mode, None if init is None else str(init),
                      train_size, precision, repeat)
    out = Path(out)
    sets = [open_dataset(spec, split) for spec in cfg.datasets]
    data = merge(sets)  # raises when there is none
    started = time.perf_counter()
    trainer = Trainer(cfg, data, out, resolve_device(device), epoch_rows(sets, repeat))
    if resume:
        trainer.load_checkpoint()
    trainer.fit()
    fitted, used_c = trainer.fit_detectors(detector_c) if detectors else (None, None)
    record = {**vars(cfg), "images": len(data), "loss": trainer.losses, "detector_c": used_c,
              "hardware": _hardware(trainer.device, trainer.amp_dtype),
              "train_time": f"{(time.perf_counter() - started) / 60:.1f} minutes wall, network and detectors"
                            + (" (this process; resumed)" if resume else "")}
    if init is not None:  # the weights came from there: keep how that bundle was made
        record.update(weights=None, init=str(init), before=read_config(Path(init)).training)
    config = BundleConfig(name=out.name, backbone=backbone, concepts=list(data.concepts), data_config=trainer.data_config,
                          weights={"file": WEIGHTS_FILE}, strategy=trainer.net.spec.name, output="sigmoid",
                          training=record, seed=seed)
    save_bundle(out, config, trainer.net.cpu(), fitted)
    write_model_card(out)
    _remove_checkpoints(out)
    return out


def refit_detectors(bundle: Path, datasets: list[str] | None = None, split: str = "train",
                    crop_mode: str | None = None, batch_size: int = 32, device: str | None = None,
                    seed: int = 0, detector_c: float | str | None = None, open_world: bool = False,
                    calibrate: str | None = None, cache: Path | None = None, background: int = 0) -> Path:
    """Fit a fine-tuned bundle's LR detectors again, leaving its network as it is.

    For when the photos or the preprocessing change after training, e.g. a bundle trained on a
    GPU machine from compressed copies of the photos gets detectors fitted on the originals
    here, or switches to whole-image inference (``crop_mode="none"``), or gets negatives from
    other sets and a background pool. Layer outputs come from the inference path
    (:meth:`ConceptModel.layer_outputs`), so the detectors see exactly what they will score.
    The bundle's recorded metrics measured the old detectors and are dropped.

    Args:
        bundle: a bundle with a concept layer (written by :func:`train`).
        datasets: data set specs; default: those it was trained on. Their concept union
            must be the bundle's concepts (a background pool is a ``csv:`` set of all of them, 0).
        split, batch_size, device, seed, detector_c: as in :func:`train`.
        crop_mode: switch the bundle's inference crop first (``"center"`` or ``"none"``).
        open_world: a photo of one set is a negative for another set's concepts unless it may
            show them (:func:`vidconcept.data.open_world.merge_open_world`).
        calibrate: ``"platt"``, ``"isotonic"`` or ``"auto"`` (the one with the lower held-out ECE):
            calibrate the fused scores per concept on out-of-fold scores of these rows
            (:mod:`.calibration`); ``None``: no calibration.
        cache: a folder keeping the layer outputs of each data set (:mod:`.outputs_cache`), so the
            next refit of this network reads them instead of running it.
        background: add this many generated background frames, negatives for every concept
            (:func:`vidconcept.data.background.write_background`, seeded by ``seed``; drawn into
            ``cache`` when given, else a temporary folder).

    Returns:
        ``bundle``.
    """
    from vidconcept.data.open_world import merge_open_world
    from vidconcept.model.bundle import build_network
    from vidconcept.model.calibration import METHODS
    from vidconcept.model.concept_model import ConceptModel
    from vidconcept.model.names import aliases_for
    from vidconcept.model.outputs_cache import layer_outputs_of

    _check_crop_mode(crop_mode)
    detector_c = parse_c(detector_c)
    if calibrate not in (None, "auto", *METHODS):
        raise UsageError(f"calibrate must be auto, {' or '.join(METHODS)}, got {calibrate!r}")
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    bundle = Path(bundle)
    config = read_config(bundle)
    if not config.strategy:
        raise UsageError(f"{bundle}: LR detectors need a fine-tuned concept layer (this bundle has no strategy)")
    specs = list(datasets or (config.training or {}).get("datasets") or [])
    if not specs:
        raise UsageError(f"{bundle}: its config names no training data sets: give datasets")
    if background < 0:
        raise UsageError(f"background must be a number of frames ≥ 0, got {background}")
    sets = [open_dataset(spec, split) for spec in specs]
    if background:
        sets.append(_background_set(config.concepts, background, seed, cache))
    data = merge_open_world(sets) if open_world else merge(sets)
    if sorted(data.concepts) != sorted(config.concepts):
        raise UsageError(f"the data sets' concepts ({len(data.concepts)}) are not the bundle's ({len(config.concepts)})")
    if crop_mode:
        config.data_config["crop_mode"] = crop_mode
    started = time.perf_counter()
    net = build_network(bundle, config)
    model = ConceptModel(config, net, [], resolve_device(device))
    model.bundle_dir = bundle.resolve()
    per_set = [layer_outputs_of(model, s, batch_size, cache, desc=f"layer outputs {s.spec}") for s in sets]
    outputs = {name: np.concatenate([p[name] for p in per_set]) for name in net.lr_layers}
    columns = [data.concepts.index(c) for c in config.concepts]
    labels, mask = data.labels[:, columns], data.mask[:, columns]
    detectors, used_c = fit_layers(outputs, labels, mask, detector_c, seed)
    calibration, calibration_record = None, None
    if calibrate:
        calibration, calibration_record = _calibrate(outputs, labels, mask, used_c, seed, calibrate)
    inference_dtype = torch.float16 if model.device.startswith("cuda") else None  # as layer_outputs ran
    config.training = {**(config.training or {}),
                       "detectors": {"datasets": specs, "split": split, "images": len(data), "c": used_c,
                                     "open_world": open_world, "calibration": calibrate, "background": background,
                                     "time": f"{(time.perf_counter() - started) / 60:.1f} minutes wall on "
                                             f"{_hardware(model.device, inference_dtype)}",
                                     "command": shlex.join(sys.argv)}}
    config.metrics = {}
    config.aliases = config.aliases or aliases_for(config.concepts)
    config.calibration = calibration_record
    save_bundle(bundle, config, None, detectors, calibration)
    write_model_card(bundle)
    log.info("refitted %d layers of LR detectors of %s on %d images", len(detectors), bundle, len(data))
    return bundle


def _background_set(concepts: list[str], count: int, seed: int, cache: Path | None) -> LabelledImages:
    """The generated background pool as a data set (kept beside the cache, so its outputs are cached too)."""
    import tempfile

    from vidconcept.data.background import write_background

    folder = Path(cache) / f"background-{count}-seed{seed}" if cache else Path(tempfile.mkdtemp(prefix="background-"))
    if not (folder / "labels.csv").is_file():
        write_background(folder, list(concepts), count, seed)
    data = open_dataset(f"csv:{folder / 'labels.csv'}")
    data.spec = f"background:{count}"
    return data


def _calibrate(outputs: dict[str, np.ndarray], labels: np.ndarray, mask: np.ndarray, used_c: dict[str, float],
               seed: int, method: str):
    """The calibration of the fused scores, fitted on out-of-fold scores, and what to record of it."""
    from vidconcept.model.calibration import ECE_BINS, choose_method, expected_calibration_error, fit_calibration
    from vidconcept.model.detectors import CV_FOLDS, out_of_fold_fused

    held_out = out_of_fold_fused(outputs, labels, mask, used_c, seed)
    chosen, eces = choose_method(held_out, labels, mask, seed)
    method = chosen if method == "auto" else method
    record = {"method": method, "bins": ECE_BINS,
              "fitted_on": f"out-of-fold fused scores of the refit's rows ({CV_FOLDS} folds)",
              "ece_uncalibrated": round(expected_calibration_error(held_out, labels, mask), 6),
              "ece_calibrated": eces, "ece_measured_on": "the other half of those rows (fitted on one half, both ways)"}
    log.info("calibration: %s (held-out ECE %s, uncalibrated %s)", method, eces, record["ece_uncalibrated"])
    return fit_calibration(held_out, labels, mask, method), record


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """Images and stage outputs in the network's memory format (other shapes as they are)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX, within oneDNN's ISA limit): the one
    test inference uses too (:func:`vidconcept.model.cpu.native_bf16`); emulated bf16 is slower than fp32."""
    from vidconcept.model.cpu import native_bf16

    return native_bf16()[0]


def autocast_dtype(device: str, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of training on ``device``: fp16 on CUDA, bf16 on CPUs that have it, else None."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return None
    if device.startswith("cuda"):
        return torch.float16
    return torch.bfloat16 if cpu_has_bf16() else None


def _hardware(device: str, amp_dtype: torch.dtype | None) -> str:
    import os
    import platform

    precision = {torch.float16: "fp16 autocast", torch.bfloat16: "bf16 autocast"}.get(amp_dtype, "fp32")
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (torch {torch.__version__}, {precision})"
    return (f"CPU, {torch.get_num_threads()} threads of {os.cpu_count()} cores, {platform.machine()} "
            f"(torch {torch.__version__}, {precision})")


def epoch_rows(sets: list[LabelledImages], repeat: dict[str, int]) -> np.ndarray:
    """The rows of ``merge(sets)`` one epoch visits: each set's rows ``repeat.get(spec, 1)`` times."""
    rows, start = [], 0
    for s in sets:
        rows.append(np.tile(np.arange(start, start + len(s)), repeat.get(s.spec, 1)))
        start += len(s)
    return np.concatenate(rows)


def _check_repeat(repeat: dict[str, int], datasets: list[str]) -> dict[str, int]:
    for spec, times in repeat.items():
        if spec not in datasets:
            raise UsageError(f"repeat names {spec!r}, which is not one of the training data sets: {', '.join(datasets)}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise UsageError(f"repeat {spec!r} must be a whole number ≥ 1, got {times!r}")
    return dict(repeat)


def _check_crop_mode(crop_mode: str | None) -> None:
    from vidconcept.model.concept_model import WHOLE_IMAGE

    if crop_mode not in (None, "center", WHOLE_IMAGE):
        raise UsageError(f"crop_mode must be 'center' or {WHOLE_IMAGE!r}, got {crop_mode!r}")


def _remove_checkpoints(out: Path) -> None:
    folder = out / CHECKPOINT_DIR
    for path in folder.glob("*"):
        path.unlink()
    if folder.is_dir():
        folder.rmdir()

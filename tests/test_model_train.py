"""Training: masked loss, loss decrease, determinism, bundles that round-trip."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from vidconcept.data import open_dataset
from vidconcept.testing.photos import write_folder_set
from vidconcept.errors import UsageError
from vidconcept.model import ConceptModel, read_config, save_bundle
from vidconcept.model.train import masked_bce, train

SOURCES = {"coffee": skimage.data.coffee(), "cat": skimage.data.chelsea(), "astronaut": skimage.data.astronaut(),
           "rocket": skimage.data.rocket()}
FAST = dict(epochs=3, batch_size=8, image_size=64, lr=0.05, device="cpu")


@pytest.fixture(scope="module")
def folder_spec(tmp_path_factory) -> str:
    return write_folder_set(tmp_path_factory.mktemp("data") / "set", SOURCES, per_concept=6, size=80)


@pytest.fixture(scope="module")
def bundle(folder_spec, tmp_path_factory):
    return train("tf_efficientnet_lite0", "ft3-ex1-64", [folder_spec], tmp_path_factory.mktemp("m") / "tiny",
                 cache_stages=12, **FAST)


def test_masked_labels_do_not_contribute():
    logits = torch.randn(4, 3, requires_grad=True)
    labels = torch.randint(0, 2, (4, 3)).float()
    mask = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 1, 0]], dtype=torch.float32)
    masked_bce(logits, labels, mask).backward()
    assert torch.all(logits.grad[mask == 0] == 0) and torch.all(logits.grad[mask == 1] != 0)
    flipped = labels.clone()
    flipped[mask == 0] = 1 - flipped[mask == 0]  # unknown entries may hold anything
    assert masked_bce(logits, flipped, mask).item() == pytest.approx(masked_bce(logits, labels, mask).item())


def test_training_reduces_the_loss(bundle):
    losses = read_config(bundle).training["loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_full_fine_tuning_reduces_the_loss(folder_spec, tmp_path):
    out = train("tf_efficientnet_lite0", "ft2-re2", [folder_spec], tmp_path / "ft2", detectors=False, **FAST)
    config = read_config(out)
    assert config.training["loss"][-1] < config.training["loss"][0] and config.detectors is None
    assert not (out / "checkpoints").exists()


def test_same_seed_same_run(folder_spec, tmp_path, bundle):
    again = train("tf_efficientnet_lite0", "ft3-ex1-64", [folder_spec], tmp_path / "again", cache_stages=12, **FAST)
    assert read_config(again).training["loss"] == read_config(bundle).training["loss"]


def test_bundle_layout_and_config(bundle):
    config = json.loads((bundle / "config.json").read_text())
    assert config["strategy"] == "ft3-ex1-64" and config["concepts"] == sorted(SOURCES)
    assert config["detectors"]["layers"] == ["features", "ext1", "logits"]
    assert config["data_config"]["input_size"] == [3, 64, 64] and config["seed"] == 0
    assert {"weights.safetensors", "detectors.npz", "MODEL.md"} <= {p.name for p in bundle.iterdir()}
    from safetensors.torch import load_file

    assert load_file(str(bundle / "weights.safetensors"))["concept_layer.weight"].dtype == torch.float16
    assert "Reproduce with" in (bundle / "MODEL.md").read_text()


def test_fused_scores_are_the_mean_of_the_detectors(bundle, folder_spec):
    model = ConceptModel.load(bundle, device="cpu")
    data = open_dataset(folder_spec)
    images = [data.load_image(i) for i in range(0, len(data), 5)]
    scores, _ = model.predict_all(images)
    np.testing.assert_allclose(scores["fused"], np.mean([scores[f"lr:{l}"] for l in ("features", "ext1", "logits")], 0),
                               rtol=1e-6)
    np.testing.assert_array_equal(model.predict(images).scores, scores["fused"])
    assert scores["fused"].min() >= 0 and scores["fused"].max() <= 1


def test_bundle_round_trip(bundle, folder_spec, tmp_path):
    model = ConceptModel.load(bundle, device="cpu")
    data = open_dataset(folder_spec)
    images = [data.load_image(i) for i in range(len(data))]
    first = model.predict(images)
    copy = save_bundle(tmp_path / "copy", model.config, model.net, model.detectors)
    second = ConceptModel.load(copy, device="cpu").predict(images)
    np.testing.assert_allclose(second.scores, first.scores, atol=1e-6)
    np.testing.assert_allclose(second.features, first.features, atol=1e-6)


def test_cache_too_deep(folder_spec, tmp_path):
    with pytest.raises(UsageError, match="cache_stages"):
        train("tf_efficientnet_lite0", "ft1-def", [folder_spec], tmp_path / "x", cache_stages=18, **FAST)


def test_checkpoint_resume_restores_state(folder_spec, tmp_path):
    from vidconcept.model.train import Trainer, TrainConfig

    cfg = TrainConfig("tf_efficientnet_lite0", "ft3-ex1-64", [folder_spec], epochs=2, batch_size=8, image_size=64,
                      cache_stages=12)
    data = open_dataset(folder_spec)
    first = Trainer(cfg, data, tmp_path, "cpu")
    first.prepare_cache()
    first.losses.append(first.train_epoch())
    first.epoch = 1
    first.save_checkpoint()
    second = Trainer(cfg, data, tmp_path, "cpu")
    second.load_checkpoint()
    assert second.epoch == 1 and second.losses == first.losses
    for key, value in first.net.state_dict().items():
        torch.testing.assert_close(second.net.state_dict()[key], value)


@pytest.fixture(scope="module")
def oblong_spec(tmp_path_factory) -> str:
    """A folder set whose photos have three aspect ratios (4:3, 3:4, 16:9)."""
    root = tmp_path_factory.mktemp("oblong") / "set"
    rng = np.random.default_rng(1)
    for concept, image in SOURCES.items():
        (root / concept).mkdir(parents=True)
        h, w = image.shape[:2]
        for n, (rw, rh) in enumerate([(80, 60), (60, 80), (96, 54), (80, 60), (96, 54), (60, 80)]):
            top, left = rng.integers(0, h // 4), rng.integers(0, w // 4)
            crop = Image.fromarray(image[top:top + 3 * h // 4, left:left + 3 * w // 4])
            crop.resize((rw, rh), Image.BICUBIC).save(root / concept / f"{n}.jpg", quality=90)
    return f"folder:{root}"


def test_whole_image_training_fits_detectors_on_whole_images(oblong_spec, tmp_path):
    from vidconcept.model.detectors import fit_layer

    out = train("tf_efficientnet_lite0", "ft3-ex1-64", [oblong_spec], tmp_path / "whole", cache_stages=12,
                crop_mode="none", **FAST)
    model = ConceptModel.load(out, device="cpu")
    assert model.data_config["crop_mode"] == "none" and read_config(out).training["crop_mode"] == "none"
    data = open_dataset(oblong_spec)
    images = [data.load_image(i) for i in range(len(data))]
    outputs = model.layer_outputs(images)
    assert outputs["features"].shape == (len(data), 1280)
    # the detectors were fitted on whole-image outputs, not on the square crops the training cache holds
    # (up to the bundle's fp16 weights)
    square = ConceptModel(dataclasses.replace(model.config, data_config={**model.data_config, "crop_mode": "center"}),
                          model.net, [], "cpu")
    whole_mean = fit_layer("features", outputs["features"], data.labels, data.mask).mean
    square_mean = square.layer_outputs(images)["features"].mean(0)
    assert np.abs(model.detectors[0].mean - whole_mean).max() < 0.2 * np.abs(model.detectors[0].mean - square_mean).max()


def test_refit_detectors_switches_the_crop_and_is_repeatable(bundle, oblong_spec, tmp_path):
    import shutil

    from vidconcept.model.detectors import fit_layer
    from vidconcept.model.train import refit_detectors

    copy = shutil.copytree(bundle, tmp_path / "copy")
    config = read_config(copy)
    config.metrics = {"old": {"metric": "ap", "images": 1, "command": "x", "outputs": {}}}
    from vidconcept.model.bundle import write_config

    write_config(copy, config)
    before = ConceptModel.load(copy, device="cpu")
    refit_detectors(copy, [oblong_spec], crop_mode="none", device="cpu")
    after = ConceptModel.load(copy, device="cpu")
    assert after.data_config["crop_mode"] == "none" and read_config(copy).metrics == {}
    for key, value in before.net.state_dict().items():  # the network is untouched
        torch.testing.assert_close(after.net.state_dict()[key], value)
    data = open_dataset(oblong_spec)
    outputs = after.layer_outputs([data.load_image(i) for i in range(len(data))])
    for det in after.detectors:  # exactly the LR that inference-path outputs give
        want = fit_layer(det.layer, outputs[det.layer], data.labels, data.mask)
        np.testing.assert_allclose(det.coef, want.coef, rtol=1e-4, atol=1e-5)
    first = after.detectors
    refit_detectors(copy, [oblong_spec], device="cpu")  # again, crop mode kept: the same detectors
    for a, b in zip(first, ConceptModel.load(copy, device="cpu").detectors):
        np.testing.assert_array_equal(a.coef, b.coef)
    card = (copy / "MODEL.md").read_text()
    assert "LR detectors fitted again" in card and "crop_mode': 'none'" in card


def test_refit_detectors_rejects_bad_input(bundle, folder_spec, tmp_path):
    from vidconcept.testing.photos import write_folder_set
    from vidconcept.model.train import refit_detectors

    with pytest.raises(UsageError, match="crop_mode"):
        refit_detectors(bundle, [folder_spec], crop_mode="border")
    other = write_folder_set(tmp_path / "other", {"coffee": SOURCES["coffee"], "moon": skimage.data.moon()}, per_concept=2)
    with pytest.raises(UsageError, match="not the bundle's"):
        refit_detectors(bundle, [other])
    with pytest.raises(UsageError, match="no strategy"):
        from vidconcept.model.bundle import imagenet_bundle_config, save_bundle as save

        refit_detectors(save(tmp_path / "imagenet", imagenet_bundle_config()), [folder_spec])


def test_training_can_start_from_a_bundle(bundle, folder_spec, tmp_path):
    start = ConceptModel.load(bundle, device="cpu")
    out = train("tf_efficientnet_lite0", "ft3-ex1-64", [folder_spec], tmp_path / "more", init=bundle, cache_stages=12,
                epochs=1, batch_size=8, lr=1e-9, device="cpu")  # a step too small to move the weights
    more = ConceptModel.load(out, device="cpu")
    record = read_config(out).training
    assert more.data_config == start.data_config and record["init"] == str(bundle) and record["weights"] is None
    assert record["before"] == read_config(bundle).training  # how the starting weights were made
    assert "Before: how" in (out / "MODEL.md").read_text() and "CPU" in record["hardware"]
    for key, value in start.net.state_dict().items():
        torch.testing.assert_close(more.net.state_dict()[key], value, atol=1e-3, rtol=1e-3)  # fp16 bundle weights
    with pytest.raises(UsageError, match="strategy"):
        train("tf_efficientnet_lite0", "ft1-def", [folder_spec], tmp_path / "x", init=bundle, **FAST)


def test_mixed_precision_choice(monkeypatch):
    from vidconcept.model import train as train_module
    from vidconcept.model.train import autocast_dtype

    assert autocast_dtype("cuda:0") is torch.float16 and autocast_dtype("cuda", "fp32") is None
    for has_bf16, expected in [(True, torch.bfloat16), (False, None)]:
        monkeypatch.setattr(train_module, "cpu_has_bf16", lambda: has_bf16)
        assert autocast_dtype("cpu") is expected and autocast_dtype("cpu", "fp32") is None
    with pytest.raises(UsageError, match="precision"):
        autocast_dtype("cpu", "fp8")


def test_smaller_training_crops_and_fp32(folder_spec, tmp_path):
    from vidconcept.model.train import Trainer, TrainConfig, train_transform

    data = open_dataset(folder_spec)
    cfg = TrainConfig("tf_efficientnet_lite0", "ft1-def", [folder_spec], batch_size=4, image_size=64, train_size=48,
                      precision="fp32")
    trainer = Trainer(cfg, data, tmp_path, "cpu")
    x, _, _ = next(iter(trainer.batches()))
    assert x.shape == (4, 3, 48, 48) and trainer.amp_dtype is None
    assert trainer.data_config["input_size"] == [3, 64, 64]  # inference keeps its size
    assert train_transform(trainer.data_config)(Image.fromarray(SOURCES["cat"])).shape == (3, 64, 64)
    out = train("tf_efficientnet_lite0", "ft1-def", [folder_spec], tmp_path / "fp32", detectors=False,
                train_size=48, precision="fp32", **{**FAST, "epochs": 1})
    record = read_config(out).training
    assert record["train_size"] == 48 and record["precision"] == "fp32" and "fp32" in record["hardware"]
    assert ConceptModel.load(out, device="cpu").data_config["input_size"] == [3, 64, 64]
    for bad in [dict(train_size=8), dict(precision="half")]:
        with pytest.raises(UsageError):
            train("tf_efficientnet_lite0", "ft1-def", [folder_spec], tmp_path / "bad", **bad, **FAST)


def test_repeat_weights_a_data_set_in_each_epoch(folder_spec, tmp_path):
    from vidconcept.data import merge
    from vidconcept.model.train import Trainer, TrainConfig, epoch_rows

    small = write_folder_set(tmp_path / "small", {"rocket": SOURCES["rocket"], "coffee": SOURCES["coffee"]},
                             per_concept=2, size=80)
    sets = [open_dataset(folder_spec), open_dataset(small)]
    rows = epoch_rows(sets, {small: 3})
    big = len(sets[0])
    assert np.array_equal(rows, np.r_[np.arange(big), np.tile(np.arange(big, big + 4), 3)])
    cfg = TrainConfig("tf_efficientnet_lite0", "ft1-def", [folder_spec, small], batch_size=8, image_size=48,
                      precision="fp32", repeat={small: 3})
    trainer = Trainer(cfg, merge(sets), tmp_path / "t", "cpu", rows)
    assert sum(len(x) for x, _, _ in trainer.batches()) == big + 12 and trainer.steps_per_epoch == -(-(big + 12) // 8)
    out = train("tf_efficientnet_lite0", "ft1-def", [folder_spec, small], tmp_path / "rep", repeat={small: 3},
                **{**FAST, "epochs": 1})
    record = read_config(out).training
    assert record["repeat"] == {small: 3} and record["images"] == big + 4  # detectors: each photo once
    assert f"repeat: `{{'{small}': 3}}`" in (out / "MODEL.md").read_text()
    for bad in [{"folder:/elsewhere": 2}, {small: 0}, {small: "3"}]:
        with pytest.raises(UsageError, match="repeat"):
            train("tf_efficientnet_lite0", "ft1-def", [folder_spec, small], tmp_path / "bad", repeat=bad, **FAST)


def _wide_noisy(rng, n: int, dims: int = 400):
    """Few positives a concept, each weakly shown by 20 of many noisy columns."""
    labels = (rng.random((n, 3)) < 0.12).astype(np.float32)
    x = rng.normal(size=(n, dims)).astype(np.float32)
    for j in range(3):
        x[:, 20 * j:20 * (j + 1)] += 0.5 * labels[:, j:j + 1]
    return x, labels, np.ones_like(labels)


def test_cross_validated_c_regularises_wide_layers_and_generalises():
    from vidconcept.metrics.ap import average_precision
    from vidconcept.model.detectors import C_GRID, DETECTOR_C, choose_c, fit_layer

    rng = np.random.default_rng(0)
    x, labels, mask = _wide_noisy(rng, 300)
    c, scores = choose_c(x, labels, mask)
    assert set(scores) == set(C_GRID) and scores[c] == max(scores.values())
    assert c < DETECTOR_C  # 400 columns, ~36 positives a concept: the default C over-fits
    x_new, labels_new, _ = _wide_noisy(rng, 2000)  # new rows of the same kind

    def held_out_map(c: float) -> float:
        p = fit_layer("features", x, labels, mask, c=c).predict(x_new)
        return float(np.mean([average_precision(p[:, j], labels_new[:, j]) for j in range(3)]))

    assert held_out_map(c) > held_out_map(DETECTOR_C) + 0.02
    # no fold holds a positive to score: the default C
    assert choose_c(x[:6], np.zeros_like(labels[:6]), mask[:6])[0] == DETECTOR_C


def test_detector_c_is_checked_and_recorded(bundle, folder_spec, tmp_path):
    import shutil

    from vidconcept.model.detectors import fit_layer, parse_c
    from vidconcept.model.train import refit_detectors

    assert parse_c("cv") == "cv" and parse_c("0.5") == 0.5 and parse_c(None) is None
    for bad in ["0", -1, "nan", "inf", "strong"]:
        with pytest.raises(UsageError, match="'cv' or a positive number"):
            parse_c(bad)
    with pytest.raises(UsageError, match="positive number"):  # checked before any training
        train("tf_efficientnet_lite0", "ft1-def", [folder_spec], tmp_path / "never", detector_c=0, **FAST)
    assert not (tmp_path / "never").exists()
    assert read_config(bundle).training["detector_c"] == {"features": 1.0, "ext1": 1.0, "logits": 1.0}

    copy = shutil.copytree(bundle, tmp_path / "copy")
    refit_detectors(copy, [folder_spec], device="cpu", detector_c="0.1")
    model = ConceptModel.load(copy, device="cpu")
    data = open_dataset(folder_spec)
    outputs = model.layer_outputs([data.load_image(i) for i in range(len(data))])
    for det in model.detectors:
        want = fit_layer(det.layer, outputs[det.layer], data.labels, data.mask, c=0.1)
        np.testing.assert_allclose(det.coef, want.coef, rtol=1e-4, atol=1e-5)
    assert read_config(copy).training["detectors"]["c"] == {"features": 0.1, "ext1": 0.1, "logits": 0.1}
    assert "C per layer" in (copy / "MODEL.md").read_text()


def test_refit_with_background_open_world_and_calibration(bundle, folder_spec, tmp_path):
    import shutil

    from vidconcept.data.background import write_background
    from vidconcept.model.train import refit_detectors

    copy = shutil.copytree(bundle, tmp_path / "copy")
    background = write_background(tmp_path / "bg", read_config(copy).concepts, count=6)
    cache = tmp_path / "cache"
    refit_detectors(copy, [folder_spec, background], device="cpu", open_world=True, calibrate="platt", cache=cache)
    config = read_config(copy)
    assert config.calibration["method"] == "platt" and (copy / "calibration.npz").is_file()
    assert {"ece_uncalibrated", "ece_calibrated"} <= set(config.calibration) and config.aliases["cats"] == "cat"
    assert config.training["detectors"]["open_world"] and config.training["detectors"]["images"] == 24 + 6
    cached = sorted(cache.glob("*.npz"))
    assert len(cached) == 2  # one per data set
    model = ConceptModel.load(copy, device="cpu")
    data = open_dataset(folder_spec)
    scores, _ = model.predict_all([data.load_image(i) for i in range(0, len(data), 4)])
    np.testing.assert_allclose(scores["fused"], model.calibration.apply(scores["uncalibrated"]), rtol=1e-6)
    first = model.detectors
    refit_detectors(copy, [folder_spec, background], device="cpu", open_world=True, calibrate="platt", cache=cache)
    assert sorted(cache.glob("*.npz")) == cached  # read back, not computed again
    for a, b in zip(first, ConceptModel.load(copy, device="cpu").detectors):
        np.testing.assert_array_equal(a.coef, b.coef)
    refit_detectors(copy, [folder_spec], device="cpu", cache=cache)  # no calibration asked: the old one goes
    assert read_config(copy).calibration is None and not (copy / "calibration.npz").exists()


def test_a_bundle_without_calibration_loads_as_before(bundle, folder_spec):
    model = ConceptModel.load(bundle, device="cpu")
    data = open_dataset(folder_spec)
    scores, _ = model.predict_all([data.load_image(0)])
    assert model.calibration is None and "uncalibrated" not in scores and read_config(bundle).calibration is None

"""Training: masked loss, loss decrease, determinism, bundles that round-trip."""
from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import torch

from vidconcept.data import open_dataset
from vidconcept.data.synthetic import write_folder_set
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

"""The bundled models (the ImageNet one and the fine-tuned default) and the ConceptModel API."""
from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
from PIL import Image

from conftest import ROOT
from vidconcept.config import DEFAULT_MODEL_DIR
from vidconcept.errors import ModelError
from vidconcept.model import ConceptModel

IMAGENET_DIR = ROOT / "models" / "imagenet-lite0"


@pytest.fixture(scope="module")
def default_model() -> ConceptModel:
    """The ImageNet bundle (models/imagenet-lite0)."""
    return ConceptModel.load(IMAGENET_DIR, device="cpu")


def test_coffee_is_espresso(default_model):
    pred = default_model.predict([skimage.data.coffee()])
    top = int(pred.scores[0].argmax())
    assert default_model.concepts[top] == "espresso"
    assert pred.scores[0, top] == pytest.approx(0.95, abs=0.02)


def test_prediction_shapes_and_normalised_features(default_model):
    images = [skimage.data.coffee(), Image.fromarray(skimage.data.chelsea()), skimage.data.camera()]  # grey too
    pred = default_model.predict(images, batch_size=2)
    assert pred.scores.shape == (3, 1000) and pred.scores.dtype == np.float32
    assert pred.features.shape == (3, default_model.feature_dim) and pred.features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(pred.features, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(pred.scores.sum(1), 1.0, rtol=1e-4)


def test_imagenet_bundle_is_tiny_and_unique(default_model):
    assert not list(IMAGENET_DIR.glob("*.safetensors"))
    assert len(set(default_model.concepts)) == 1000
    assert {"crane", "crane_bird", "espresso"} <= set(default_model.concepts)
    assert default_model.data_config["input_size"] == [3, 224, 224]


def test_preprocess_follows_data_config(default_model):
    x = default_model.preprocess([skimage.data.coffee()])
    assert tuple(x.shape) == (1, 3, 224, 224)
    assert -1.01 <= float(x.min()) and float(x.max()) <= 1.01  # mean = std = 0.5


def test_missing_bundle_raises(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        ConceptModel.load(tmp_path)


def test_fine_tuned_default_bundle():
    """models/default: FT3-ex1 on VOC + scene concepts, fused LR scores, fp16 weights well under 50 MB."""
    model = ConceptModel.load(DEFAULT_MODEL_DIR, device="cpu")
    assert model.config.strategy.startswith("ft3-ex1") and model.detectors
    assert {"cat", "person", "dog", "forest", "street", "kitchen"} <= set(model.concepts)
    assert sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.iterdir()) < 50 * 2**20
    pred = model.predict([skimage.data.chelsea(), skimage.data.astronaut()])
    top = [model.concepts[int(i)] for i in pred.scores.argmax(1)]
    assert top == ["cat", "person"]
    assert pred.features.shape == (2, model.feature_dim)


def test_cpu_precision_is_part_of_the_model_version(tmp_path):
    """A bundle's ``cpu_precision`` is part of its version (bundle and backbone digests); the
    bf16 it allows moves scores by less than ``cpu.SCORE_TOLERANCE``, and the head-only
    rescoring of stored features runs under the precision chosen at load."""
    import shutil

    from vidconcept.ingest import bundle_version, model_version
    from vidconcept.model import cpu

    fp32 = shutil.copytree(ROOT / "models" / "default", tmp_path / "fp32")
    bf16 = shutil.copytree(fp32, tmp_path / "bf16")
    cfg = json.loads((fp32 / "config.json").read_text())
    (fp32 / "config.json").write_text(json.dumps({**cfg, "cpu_precision": "fp32"}))
    (bf16 / "config.json").write_text(json.dumps({**cfg, "cpu_precision": "bf16"}))
    forced = "bf16" if cpu.bf16_possible() else None  # bf16 itself wherever oneDNN has a bf16 path
    a, b = ConceptModel.load(fp32, device="cpu"), ConceptModel.load(bf16, device="cpu", cpu_precision=forced)
    assert a.precision.precision == "fp32"
    images = [np.random.default_rng(i).integers(0, 256, (288, 512, 3), dtype=np.uint8) for i in range(3)]
    pa, pb = a.predict(images), b.predict(images)
    diff = np.abs(pa.scores - pb.scores).max()
    assert diff < cpu.SCORE_TOLERANCE
    assert (diff > 0) == (b.precision.precision == "bf16"), (diff, b.precision)
    assert model_version(a)["bundle_sha1"] != model_version(b)["bundle_sha1"] == bundle_version(bf16)["bundle_sha1"]
    assert a.backbone_digest != b.backbone_digest
    again = b.predict_features(pb.features.astype(np.float16), pb.norms)
    assert np.abs(again.scores - pb.scores).max() < 0.02  # bf16 rounding of the same layers
    (bf16 / "config.json").write_text(json.dumps({**cfg, "cpu_precision": "int3"}))
    with pytest.raises(ModelError, match="cpu_precision"):
        ConceptModel.load(bf16)


def test_cpu_chunks_give_the_batch_outputs(default_model, monkeypatch):
    """On CPU a batch runs in cache-sized chunks (CPU_CHUNK_PIXELS): the outputs are those of
    each image run alone, whatever the chunk."""
    import vidconcept.model.concept_model as concept_model

    images = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.astronaut(), skimage.data.rocket()]
    alone = [default_model.layer_outputs([image]) for image in images]
    for chunk in (1, 3, 8):
        monkeypatch.setattr(concept_model, "CPU_CHUNK_PIXELS", chunk * 224 * 224)
        together = default_model.layer_outputs(images)
        for name, value in together.items():
            np.testing.assert_allclose(value, np.concatenate([a[name] for a in alone]), rtol=1e-5, atol=1e-6)

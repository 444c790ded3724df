"""GPU path: the same code on CUDA gives the CPU's results (skipped without CUDA)."""
import numpy as np
import pytest
import skimage.data
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_concept_model_on_cuda_matches_cpu():
    from vidconcept.model import ConceptModel

    images = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.astronaut()]
    cpu = ConceptModel.load(device="cpu").predict(images)
    gpu_model = ConceptModel.load(device="cuda")
    assert gpu_model.device.startswith("cuda")
    gpu = gpu_model.predict(images)
    np.testing.assert_allclose(gpu.scores, cpu.scores, atol=2e-2)  # autocast fp16
    assert (gpu.scores.argmax(1) == cpu.scores.argmax(1)).all()
    assert np.all(np.sum(gpu.features * cpu.features, axis=1) > 0.99)


def test_faiss_gpu_search_matches_cpu():
    import faiss

    from vidconcept.index.vectors import VectorIndex

    if faiss.get_num_gpus() == 0:
        pytest.skip("this FAISS build sees no GPU")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 64)).astype(np.float32)
    vi = VectorIndex(64)
    vi.add(np.arange(5000), x)
    sims, ids = vi.search(x[:20], 10)
    assert vi._search_index is not vi.index  # moved to the GPU
    exact = (x[:20] / np.linalg.norm(x[:20], axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    want = np.argsort(-exact, axis=1)[:, :10]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want)]) > 0.99


def test_ingest_on_cuda(photo_videos, tmp_path):
    from vidconcept.api import Index

    with Index(tmp_path / "idx", create=True, device="cuda") as idx:
        assert idx.ingest([photo_videos]).to_dict()["shots"] == 5
        assert idx.search("espresso", top=1)[0].score > 0.5

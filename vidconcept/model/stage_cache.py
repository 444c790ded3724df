"""Outputs of a network's frozen lower stages, per image, on the inference path.

Fine-tuning only the top of a network (``cache_stages``) leaves everything below it fixed, so on
a CPU the lower stages' outputs are computed once per photo and every epoch, every refit of the
LR detectors and every evaluation of a candidate runs only the top. Unlike the square training
crops of :meth:`vidconcept.model.train.Trainer.prepare_cache`, these maps come from the bundle's
own preprocessing (whole images keep their aspect ratio), so the detectors see what ingest sees.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from vidconcept.data.datasets import LabelledImages
from vidconcept.model.concept_model import eval_transform, same_size_batches


class _Images(torch.utils.data.Dataset):
    def __init__(self, data: LabelledImages, transform):
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return i, self.transform(self.data.load_image(i))


@torch.inference_mode()
def stage_outputs(model, data: LabelledImages, stop: int, batch_size: int = 32, workers: int = 0,
                  desc: str = "stage outputs") -> list[torch.Tensor]:
    """``[C, h, w]`` fp16 output of backbone stages ``[:stop]`` for each image of ``data``, in row order.

    Runs the bundle's plain network (not the fused runner) under the CPU's bf16 autocast when it
    has native bf16, as training does; the maps are stored in fp16.
    """
    from tqdm.auto import tqdm

    from vidconcept.model.train import cpu_has_bf16

    net = model.net.eval()
    loader = torch.utils.data.DataLoader(_Images(data, eval_transform(model.data_config)), batch_size=None,
                                         num_workers=workers)
    maps: list[torch.Tensor | None] = [None] * len(data)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_bf16()), tqdm(total=len(data), desc=desc) as bar:
        for rows, x in same_size_batches(iter(loader), batch_size):
            out = net.backbone.forward_stages(x.contiguous(memory_format=torch.channels_last), 0, stop)
            for row, m in zip(rows, out.half().contiguous()):
                maps[row] = m.clone()
            bar.update(len(rows))
    return maps  # type: ignore[return-value]


def shape_batches(maps: list[torch.Tensor], rows: np.ndarray, batch_size: int,
                  generator: torch.Generator | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Batches of ``maps[rows]`` grouped by shape (shuffled within and across groups when ``generator``)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for r in rows:
        groups.setdefault(tuple(maps[r].shape), []).append(int(r))
    batches = []
    for members in groups.values():
        members = np.array(members)
        if generator is not None:
            members = members[torch.randperm(len(members), generator=generator).numpy()]
        batches += [members[i:i + batch_size] for i in range(0, len(members), batch_size)]
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    for b in batches:
        yield b, torch.stack([maps[r] for r in b])

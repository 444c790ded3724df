"""Train the open-world release of the default concept model (issue 30), step by step, resumably.

Every photo set of ``../shared/data`` (train splits) joins one concept pool, names merged by
measurement (:mod:`vidconcept.model.vocabulary`). Steps, each cached under ``--out``:

1. ``cache``: the frozen stages' outputs of every training photo (the slow part on a CPU);
2. ``names``: closed-world LR per set on the starting network's features, and the per-pair
   transfer AP that decides which names merge (``names.json``);
3. ``train``: FT3-ex1 fine-tuning of the top stages (pretrained at ``lr * lr_mult``) with the
   masked loss over the merged sets, cross-set negatives from the co-occurrence table and the
   teacher (``bundle/``);
4. ``detectors``: LR detectors on the inference path with the background pool, calibration;
5. ``evaluate``: held-out photo AP per concept and per set.

Usage (from the repository root)::

    nohup .venv/bin/python benchmarks/release_default.py --out runs/release all > runs/release.log 2>&1 &
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: The photo sets, in row order (the stage cache depends on it).
SETS = ["voc:voc2007", "folder:intel_scenes", "folder:scene15", "folder:sun8", "folder:miniplaces",
        "folder:sports100", "folder:caltech101", "folder:fire", "folder:daynight", "folder:fog"]
EVAL_SPLIT = {"voc2007": "val"}  # the others: test


def specs(root: Path) -> list[str]:
    return [f"{kind}:{root / name}" for kind, _, name in (s.partition(":") for s in SETS)]


def set_name(spec: str) -> str:
    return Path(spec.partition(":")[2]).name


def eval_split(spec: str) -> str:
    return EVAL_SPLIT.get(set_name(spec), "test")


def stage_file(args, spec: str, split: str) -> Path:
    return args.out / "stages" / f"{set_name(spec)}-{split}.pt"


def gray_stage_file(args, spec: str, split: str) -> Path:
    """Stage maps of grey copies: a ``--gray`` share of the training photos, or every test photo."""
    tag = f"gray{args.gray}" if split == "train" else "gray"
    return args.out / "stages" / f"{set_name(spec)}-{split}-{tag}.pt"


class GrayCopies:
    """Rows ``rows`` of a photo set as greyscale (three equal channels): black-and-white film and archive
    footage, which no photo set shows, seen through the photos' labels."""

    def __init__(self, data, rows):
        self.data, self.rows = data, list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def load_image(self, index: int):
        return self.data.load_image(self.rows[index]).convert("L").convert("RGB")


def gray_rows(args, n: int, spec: str) -> list[int]:
    """The training rows of one set whose grey copy joins the detectors' rows: a seeded ``--gray`` share."""
    import zlib

    import numpy as np

    rng = np.random.default_rng([args.seed, zlib.crc32(set_name(spec).encode())])
    return np.flatnonzero(rng.random(n) < args.gray).tolist()


def step_cache(args) -> None:
    """Stage outputs below the fine-tuned top of every photo, on the inference path (whole image)."""
    import torch

    from vidconcept.data import open_dataset
    from vidconcept.model.concept_model import ConceptModel
    from vidconcept.model.stage_cache import stage_outputs

    torch.set_num_threads(args.threads)
    model = ConceptModel.load(args.init, device="cpu")
    jobs = [(spec, "train") for spec in specs(args.data)] + [(spec, eval_split(spec)) for spec in specs(args.data)]
    for spec, split in jobs:
        path = stage_file(args, spec, split)
        if path.is_file():
            continue
        data = open_dataset(spec, split)
        maps = stage_outputs(model, data, args.cache_stages, workers=args.workers, desc=f"{set_name(spec)}/{split}")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"paths": [str(p) for p in data.paths], "maps": maps}, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
    gray_jobs = ([(spec, "train") for spec in specs(args.data)] if args.gray else []) + \
        ([(spec, eval_split(spec)) for spec in specs(args.data)] if args.gray_test else [])
    for spec, split in gray_jobs:
        path = gray_stage_file(args, spec, split)
        if path.is_file():
            continue
        data = open_dataset(spec, split)
        rows = gray_rows(args, len(data), spec) if split == "train" else list(range(len(data)))
        maps = stage_outputs(model, GrayCopies(data, rows), args.cache_stages, workers=args.workers,
                             desc=f"{set_name(spec)}/{split} grey")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"rows": rows, "of": len(data), "maps": maps}, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)


#: Per set: names renamed before merging (typos of the source fixed; the raw name stays an alias) and
#: the names kept out of the vocabulary (``None``). Caltech-101 keeps the classes that may merge with
#: another set's and its two face classes (≤ 7 photos a class is too few to learn or measure the others).
BASE_NAMES: dict[str, dict[str, str | None]] = {
    "caltech101": {"airplanes": "airplanes", "motorbikes": "motorbikes", "car_side": "car_side", "chair": "chair",
                   "ferry": "ferry", "ketch": "ketch", "schooner": "schooner", "faces": "face", "faces_easy": "face"},
    "sports100": {"ampute_football": "amputee_football", "barell_racing": "barrel_racing",
                  "canoe_slamon": "canoe_slalom"},
    "fire": {"no_fire": None},
}
KEEP_ONLY = {"caltech101"}
#: Pairs of names across sets that may mean the same idea beyond spelling and the alias table;
#: each is measured (vocabulary.measure_pair) and merges only if the measurement says so.
CANDIDATES = [("intel_scenes/sea", "scene15/coast"), ("intel_scenes/sea", "miniplaces/coast"),
              ("intel_scenes/glacier", "miniplaces/iceberg"), ("scene15/tallbuilding", "miniplaces/skyscraper"),
              ("intel_scenes/buildings", "scene15/tallbuilding"), ("intel_scenes/buildings", "miniplaces/skyscraper"),
              ("intel_scenes/street", "scene15/insidecity"), ("sun8/airport", "miniplaces/airport_terminal"),
              ("sun8/airport", "miniplaces/runway"), ("sun8/football_field", "miniplaces/stadium"),
              ("sun8/bamboo_forest", "scene15/forest"), ("sun8/bamboo_forest", "intel_scenes/forest"),
              ("sun8/campus", "scene15/suburb"), ("caltech101/ferry", "voc2007/boat"),
              ("caltech101/ketch", "voc2007/boat"), ("caltech101/schooner", "voc2007/boat"),
              ("scene15/opencountry", "miniplaces/corn_field"), ("scene15/industrial", "miniplaces/construction_site"),
              ("scene15/store", "miniplaces/supermarket"), ("scene15/store", "miniplaces/clothing_store")]


def load_sets(args, split: str):
    """The photo sets with their base renames, raw labels (no merges), in row order."""
    from vidconcept.data import open_dataset
    from vidconcept.model.vocabulary import rename_concepts

    sets = []
    for spec in specs(args.data):
        data = open_dataset(spec, eval_split(spec) if split == "test" else split)
        names = BASE_NAMES.get(set_name(spec), {})
        sets.append(rename_concepts(data, names, keep_only=set_name(spec) in KEEP_ONLY))
    return sets


def load_maps(args, split: str) -> list:
    import torch

    maps = []
    for spec in specs(args.data):
        stored = torch.load(stage_file(args, spec, eval_split(spec) if split == "test" else split), weights_only=True)
        maps += stored["maps"]
    return maps


def load_gray_maps(args, split: str) -> tuple[list, list[int]]:
    """Grey copies' stage maps and their rows in :func:`load_maps`' order (``split`` ``train`` or ``test``)."""
    import torch

    maps, rows, start = [], [], 0
    for spec in specs(args.data):
        real = eval_split(spec) if split == "test" else split
        stored = torch.load(gray_stage_file(args, spec, real), weights_only=True)
        maps += stored["maps"]
        rows += [start + r for r in stored["rows"]]
        start += stored["of"]
    return maps, rows


def top_outputs(net, maps: list, batch_size: int = 128) -> dict:
    """The LR layers' outputs of ``net`` from the stage maps (fp32, in row order)."""
    import numpy as np
    import torch

    from vidconcept.model.stage_cache import shape_batches

    net.eval()
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for rows, x in shape_batches(maps, np.arange(len(maps)), batch_size):
            for name, value in net.outputs(x.float(), start=net_start(net)).items():
                if name in net.lr_layers:
                    out.setdefault(name, np.zeros((len(maps), value.shape[1]), np.float32))[rows] = value.numpy()
    return out


def net_start(net) -> int:
    return net.cached_stages


def load_net(bundle: Path, concepts: list[str] | None, stages: int):
    """The bundle's network; with ``concepts``, a concept layer for those, rows copied by name."""
    from vidconcept.model.bundle import build_network, read_config
    from vidconcept.model.train import init_concept_layer

    config = read_config(bundle)
    net = build_network(bundle, config)
    if concepts is not None and list(concepts) != list(config.concepts):
        net = init_concept_layer(net, list(config.concepts), list(concepts), config.aliases)
    net.cached_stages = stages
    return net, config


def closed_world(features, sets, c: float):
    """Per set, LR detectors of its own names on its own rows: ``{"set/name": scores of every row}``."""
    import numpy as np

    from vidconcept.model.detectors import fit_layer

    scores, start = {}, 0
    for s in sets:
        rows = np.arange(start, start + len(s))
        own = s.mask.sum(0) > 0
        if len(s.concepts) == 1 or (s.labels[:, 0] > 0.5).all():  # positives only (fog): one against the world
            labels = np.zeros((len(features), len(s.concepts)), np.float32)
            labels[rows] = s.labels
            det = fit_layer("features", features, labels, np.ones_like(labels), c=c)
        else:
            det = fit_layer("features", features[rows], s.labels, s.mask, c=c)
        p = det.predict(features)
        for j, name in enumerate(s.concepts):
            if own[j]:
                scores[f"{set_name(s.spec)}/{name}"] = p[:, j]
        start += len(s)
    return scores


def step_names(args) -> None:
    """Which names merge, by measurement on the training photos (names.json)."""
    import itertools

    import numpy as np

    from vidconcept.model.names import DEFAULT_ALIASES, normalise
    from vidconcept.model.vocabulary import measure_pair

    path = args.out / "names.json"
    if path.is_file():
        return
    sets = load_sets(args, "train")
    net, _ = load_net(args.init, None, args.cache_stages)
    features = top_outputs(net, load_maps(args, "train"))["features"]
    np.save(args.out / "teacher_features.npy", features)
    scores = closed_world(features, sets, args.teacher_c)
    rows, labels, classes, start = {}, {}, {}, 0
    for s in sets:
        name = set_name(s.spec)
        rows[name], labels[name], classes[name] = np.arange(start, start + len(s)), s.labels, list(s.concepts)
        start += len(s)
    alias = {normalise(k): normalise(v) for k, v in DEFAULT_ALIASES.items()}
    pairs = set()
    for (sa, ca), (sb, cb) in itertools.combinations([(n, c) for n in classes for c in classes[n]], 2):
        if sa == sb:
            continue
        na, nb = normalise(ca), normalise(cb)
        if na == nb or alias.get(na, na) == alias.get(nb, nb) or alias.get(na) == nb or alias.get(nb) == na:
            pairs.add((f"{sa}/{ca}", f"{sb}/{cb}"))
    pairs |= set(CANDIDATES)
    measured = [measure_pair(a, b, scores, rows, labels, classes) for a, b in sorted(pairs) if a in scores and b in scores]
    record = {"rule": "vidconcept.model.vocabulary (closed-world LR on the starting network's features, C "
                      f"{args.teacher_c})", "pairs": [vars(p) for p in measured]}
    path.write_text(json.dumps(record, indent=1))


#: A set with at least this many classes is fine-grained: its other classes are often kinds of a
#: broader concept another set names (rainforest and forest, clothing_store and store), so for a
#: concept another set also names it gives positives only; the teacher judges its other photos.
FINE_SET_CLASSES = 50


def measured_pairs(args):
    from vidconcept.model.vocabulary import PairMeasure

    stored = json.loads((args.out / "names.json").read_text())["pairs"]
    return [PairMeasure(p["a"], p["b"], p["ap_ab"], p["ap_ba"], p["best_ab"], p["best_ba"]) for p in stored]


def final_sets(args, split: str):
    """The sets over the release's concepts and ``{"set/raw name": concept}`` for every kept name.

    Merged names share one column; a fine-grained set gives positives only for a concept other sets
    name too; a narrower name's photos are positives of its broader concept (``hierarchy``); a set
    kept for its merges (Caltech-101) drops the names that relate to nothing but its faces."""
    import numpy as np

    from vidconcept.data import LabelledImages
    from vidconcept.model.vocabulary import hierarchy, merged_names, rename_concepts

    pairs = measured_pairs(args)
    order = [set_name(s) for s in SETS]
    merges = merged_names(pairs, order)
    broader = hierarchy(pairs)
    related = {k for p in pairs if p.relation for k in (p.a, p.b)}
    raw = load_sets(args, split)
    classes = {set_name(s.spec): len(s.concepts) for s in load_sets(args, "train")}
    named_by = {}
    for s in raw:
        for c in s.concepts:
            named_by.setdefault(merges.get(f"{set_name(s.spec)}/{c}", c), set()).add(set_name(s.spec))
    out, taken, concept_of = [], set(), {}
    for s in raw:
        name = set_name(s.spec)
        rename = {c: merges.get(f"{name}/{c}", c) for c in s.concepts}
        if name in KEEP_ONLY:  # too few photos to stand alone: a name joins the concept it relates to, or goes
            joins = {n.split("/", 1)[1]: merges.get(w, w.split("/", 1)[1]) for w, n in broader if n.startswith(name + "/")}
            rename = {c: joins.get(c, v) for c, v in rename.items() if f"{name}/{c}" in related or c == "face"}
        # a spelling an earlier set already uses for another idea (measured apart) gets its set's name
        joined = joins if name in KEEP_ONLY else {}
        rename = {c: (f"{v}_{name}" if v in taken and f"{name}/{c}" not in merges and c not in joined else v)
                  for c, v in rename.items()}
        t = rename_concepts(s, rename, keep_only=name in KEEP_ONLY)
        labels, mask, concepts = t.labels.copy(), t.mask.copy(), list(t.concepts)
        if classes[name] >= FINE_SET_CLASSES:
            for j, c in enumerate(concepts):
                if len(named_by.get(c, ())) > 1:
                    mask[:, j] = labels[:, j]
        for wide, narrow in broader:
            if name in KEEP_ONLY or not narrow.startswith(name + "/") or narrow.split("/", 1)[1] not in s.concepts:
                continue
            concept = merges.get(wide, wide.split("/", 1)[1])
            source = labels[:, concepts.index(rename[narrow.split("/", 1)[1]])]
            if concept not in concepts:
                concepts.append(concept)
                labels = np.concatenate([labels, np.zeros((len(t), 1), np.float32)], 1)
                mask = np.concatenate([mask, np.zeros((len(t), 1), np.float32)], 1)
            j = concepts.index(concept)
            labels[:, j] = np.maximum(labels[:, j], source)
            mask[:, j] = np.maximum(mask[:, j], source)
        out.append(LabelledImages(t.spec, t.paths, concepts, labels, mask))
        taken |= set(rename.values())
        concept_of.update({f"{name}/{c}": v for c, v in rename.items()})
    return out, concept_of


def teacher_scores(args, sets, data):
    """``[rows, concepts]``: the highest closed-world score among the raw names of each merged concept."""
    import numpy as np

    features = np.load(args.out / "teacher_features.npy")
    raw = closed_world(features, load_sets(args, "train"), args.teacher_c)
    _, concept_of = final_sets(args, "train")
    teacher = np.zeros((len(data), len(data.concepts)), np.float32)
    for key, p in raw.items():
        if key in concept_of:
            j = data.concepts.index(concept_of[key])
            teacher[:, j] = np.maximum(teacher[:, j], p)
    return teacher


def step_train(args) -> None:
    """FT3-ex1 on the top stages over the stage maps, masked loss with open-world negatives."""
    import numpy as np
    import torch

    from vidconcept.data.open_world import merge_open_world
    from vidconcept.model.stage_cache import shape_batches
    from vidconcept.model.train import masked_bce, seed_everything

    done = args.out / "net.pt"
    if done.is_file():
        return
    sets, _ = final_sets(args, "train")
    from vidconcept.data.datasets import merge
    plain = merge(sets)
    teacher = teacher_scores(args, sets, plain)
    data = merge_open_world(sets, teacher=teacher, threshold=args.teacher_threshold)
    np.savez(args.out / "train_labels.npz", labels=data.labels, mask=data.mask, concepts=np.array(data.concepts))
    log_counts(plain, data)
    net, _ = load_net(args.init, data.concepts, args.cache_stages)
    for stage in list(net.backbone.stages.values())[:args.cache_stages]:
        stage.requires_grad_(False)
    generator = seed_everything(args.seed)
    groups = [g for g in net.parameter_groups(args.lr, args.lr_mult) if any(p.requires_grad for p in g["params"])]
    for g in groups:
        g["params"] = [p for p in g["params"] if p.requires_grad]
    optimizer = torch.optim.SGD(groups, lr=args.lr, momentum=0.9, weight_decay=1e-4, nesterov=True)
    maps = load_maps(args, "train")
    rows = np.arange(len(maps))
    steps = args.epochs * sum(1 for _ in shape_batches(maps, rows, args.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups], total_steps=steps,
                                                    pct_start=0.1)
    labels, mask = torch.from_numpy(data.labels), torch.from_numpy(data.mask)
    losses = []
    import time
    started = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        for name, stage in net.backbone.stages.items():  # pretrained batch norm keeps its statistics
            for m in stage.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        total, count = 0.0, 0
        for b, x in shape_batches(maps, rows, args.batch_size, generator):
            x = x.float()
            flip = torch.rand(len(x), generator=generator) < 0.5
            x[flip] = x[flip].flip(-1)
            loss = masked_bce(net(x, start=args.cache_stages), labels[b], mask[b])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, count = total + float(loss) * len(b), count + len(b)
        losses.append(round(total / count, 6))
        print(f"epoch {epoch + 1}/{args.epochs}: masked BCE {losses[-1]} ({time.perf_counter() - started:.0f} s)", flush=True)
    torch.save({"net": net.state_dict(), "concepts": data.concepts, "losses": losses,
                "minutes": round((time.perf_counter() - started) / 60, 1)}, done)


def log_counts(plain, data) -> None:
    added = int(data.mask.sum() - plain.mask.sum())
    print(f"{len(data)} photos, {len(data.concepts)} concepts, {int(plain.mask.sum())} judged cells by the sets, "
          f"{added} cross-set negatives added", flush=True)


#: The LR detectors' C per layer (chosen by 3-fold CV for the 38-concept default: docs/STUDY.md).
DETECTOR_C = {"features": 0.03, "ext1": 0.1, "logits": 1.0}
BACKGROUND = 300


def trained_net(args, keep: list[str] | None = None):
    """The trained network, its starting bundle's config and the training record; with ``keep``, its
    concept layer cut down to those concepts (the rows they had)."""
    import torch

    from vidconcept.model.train import init_concept_layer

    state = torch.load(args.out / "net.pt", weights_only=False)
    net, config = load_net(args.init, state["concepts"], args.cache_stages)
    net.load_state_dict(state["net"])
    if keep is not None:
        net = init_concept_layer(net, state["concepts"], keep)
        state = {**state, "all_concepts": state["concepts"], "concepts": list(keep)}
    return net.eval(), config, state


def shipped_concepts(args) -> list[str] | None:
    """The concepts whose cross-validated AP on the training rows (``select.json``) reaches ``--min-ap``, and
    every concept that holds one of the previous default's names; ``None`` without a selection."""
    if not (args.out / "select.json").is_file() or args.min_ap <= 0:
        return None
    from vidconcept.model.bundle import read_config
    from vidconcept.model.names import resolve

    ap = json.loads((args.out / "select.json").read_text())["ap"]
    concepts = list(ap)
    aliases = release_aliases(args, concepts)
    previous = {resolve(n, concepts, aliases) for n in read_config(args.init).concepts}
    return [c for c in concepts if ap[c] >= args.min_ap or c in previous]


def extra_rows(args, concepts: list[str], aliases: dict[str, str]):
    """Rows beyond the photo sets: the generated background pool (all negative) and frames of the dev
    clips of the real-footage benchmark; their stage maps and labels over ``concepts``."""
    import numpy as np
    import torch

    from vidconcept.data import open_dataset
    from vidconcept.data.background import write_background
    from vidconcept.model.concept_model import ConceptModel
    from vidconcept.model.stage_cache import stage_outputs

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import openworld

    folder = args.out / "background"
    if not (folder / "labels.csv").is_file():
        write_background(folder, ["background"], BACKGROUND, args.seed)
    dev = args.out / "devframes"
    if not (dev / "labels.csv").is_file():
        clips, missing = openworld.load_clips("dev", openworld.footage_dirs([]))
        rows, labels, mask = openworld.judged_matrix(clips, concepts, aliases)
        openworld.write_frames(dev, clips, rows, labels, mask, concepts)
    model = None
    maps, labels, mask = [], [], []
    for name, spec in (("background", f"csv:{folder / 'labels.csv'}"), ("devframes", f"csv:{dev / 'labels.csv'}")):
        data = open_dataset(spec)
        path = args.out / "stages" / f"{name}.pt"
        if not path.is_file():
            model = model or ConceptModel.load(args.init, device="cpu")
            torch.save({"maps": stage_outputs(model, data, args.cache_stages)}, path)
        maps += torch.load(path, weights_only=True)["maps"]
        lab = np.zeros((len(data), len(concepts)), np.float32)
        msk = np.ones_like(lab) if name == "background" else np.zeros_like(lab)
        for j, c in enumerate(data.concepts):
            if c in concepts:
                lab[:, concepts.index(c)], msk[:, concepts.index(c)] = data.labels[:, j], data.mask[:, j]
        labels.append(lab)
        mask.append(msk)
    return maps, np.concatenate(labels), np.concatenate(mask)


def step_detectors(args) -> None:
    """LR detectors of the three last layers on the training rows plus the background and dev frames; calibration."""
    import shlex
    import time

    import numpy as np

    from vidconcept.model.bundle import WEIGHTS_FILE, BundleConfig, save_bundle
    from vidconcept.model.card import write_model_card
    from vidconcept.model.detectors import fit_layers
    from vidconcept.model.train import _calibrate

    keep = shipped_concepts(args)
    bundle = bundle_dir(args, keep)
    if (bundle / "config.json").is_file():
        return
    net, init_config, state = trained_net(args, keep)
    concepts = state["concepts"]
    columns = [state.get("all_concepts", concepts).index(c) for c in concepts]
    aliases = release_aliases(args, concepts)
    started = time.perf_counter()
    stored = np.load(args.out / "train_labels.npz")
    extra_maps, extra_labels, extra_mask = extra_rows(args, concepts, aliases)
    maps = load_maps(args, "train") + extra_maps
    labels = np.concatenate([stored["labels"][:, columns], extra_labels])
    mask = np.concatenate([stored["mask"][:, columns], extra_mask])
    if args.gray:
        gray_maps, gray_of = load_gray_maps(args, "train")
        maps += gray_maps
        labels = np.concatenate([labels, stored["labels"][gray_of][:, columns]])
        mask = np.concatenate([mask, stored["mask"][gray_of][:, columns]])
    outputs = top_outputs(net, maps)
    detectors, used_c = fit_layers(outputs, labels, mask, DETECTOR_C, args.seed)
    calibration, calibration_record = _calibrate(outputs, labels, mask, used_c, args.seed, "auto")
    record = {"backbone": init_config.backbone, "strategy": init_config.strategy,
              "datasets": [s for s in specs(args.data)], "split": "train", "images": len(stored["labels"]),
              "init": f"{args.init} ({init_config.name}, {len(init_config.concepts)} concepts; its first "
                      f"{args.cache_stages} stages frozen, their outputs cached)",
              "cache_stages": args.cache_stages, "epochs": args.epochs, "lr": args.lr, "lr_mult": args.lr_mult,
              "batch_size": args.batch_size, "seed": args.seed, "loss": state["losses"],
              "open_world": f"co-occurrence table + closed-world teacher below {args.teacher_threshold}",
              "names": "benchmarks/release_default.py names (names.json: merges by measurement)",
              "shipped": (f"{len(concepts)} of {len(state.get('all_concepts', concepts))} concepts: cross-validated AP "
                          f"on the training rows >= {args.min_ap} (select.json), or a name of the previous default"
                          if keep is not None else "every trained concept"),
              "train_time": f"{state['minutes']} minutes wall for the network (stage maps cached)",
              "detectors": {"datasets": [*specs(args.data), f"background:{BACKGROUND}", "csv:runs/release/devframes",
                                         *([f"greyscale copies of a seeded {args.gray} share of the training photos"]
                                           if args.gray else [])],
                            "split": "train", "images": len(labels), "c": used_c, "background": BACKGROUND,
                            "open_world": True, "calibration": "auto",
                            "time": f"{(time.perf_counter() - started) / 60:.1f} minutes wall",
                            "command": shlex.join(["python", *sys.argv])},
              "before": init_config.training,
              "hardware": hardware(), "command": shlex.join(["python", *sys.argv])}
    config = BundleConfig(name="default", backbone=init_config.backbone, concepts=list(concepts),
                          data_config=init_config.data_config, weights={"file": WEIGHTS_FILE},
                          strategy=init_config.strategy, output="sigmoid", training=record, seed=args.seed,
                          aliases=aliases, cpu_precision=init_config.cpu_precision)
    config.calibration = calibration_record
    save_bundle(bundle, config, net, detectors, calibration)
    write_model_card(bundle)
    print(f"bundle written to {bundle}")


def bundle_dir(args, keep: list[str] | None) -> Path:
    name = "bundle" if keep is None else f"bundle-ap{args.min_ap}"
    return args.out / (f"{name}-gray{args.gray}" if args.gray else name)


def hardware() -> str:
    import os
    import platform

    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"CPU {cpu}, {torch.get_num_threads()} threads of {os.cpu_count()} cores (torch {torch.__version__})"


def release_aliases(args, concepts: list[str]) -> dict[str, str]:
    """``{alias: concept}``: every set's own name for a concept it was merged into, the sets' raw spellings
    of renamed names, and the default alias table's entries for the concepts (so every old name stays
    searchable)."""
    from vidconcept.model.names import aliases_for

    from vidconcept.model.names import DEFAULT_ALIASES

    _, concept_of = final_sets(args, "train")
    raw_of: dict[tuple[str, str], list[str]] = {}
    for n, names in BASE_NAMES.items():
        for raw, new in names.items():
            if new:
                raw_of.setdefault((n, new), []).append(raw)
    aliases = {}
    for key, concept in concept_of.items():
        name, base = key.split("/", 1)
        for spelling in (base, *raw_of.get((name, base), [])):
            if spelling != concept and spelling not in concepts:
                aliases[spelling] = concept
    # the default table's aliases of a name that is itself an alias now ("beach" -> coast -> sea)
    table = {k: aliases.get(v, v) for k, v in DEFAULT_ALIASES.items()}
    return {**aliases_for(concepts, table), **aliases}


def step_select(args) -> None:
    """Cross-validated AP of every concept on the training rows (out-of-fold fused scores: the detectors
    never saw the row they score): ``select.json``, what decides which concepts ship (never the test photos)."""
    import numpy as np

    from vidconcept.metrics.ap import average_precision
    from vidconcept.model.detectors import out_of_fold_fused

    path = args.out / "select.json"
    if path.is_file():
        return
    net, _, state = trained_net(args)
    concepts = state["concepts"]
    stored = np.load(args.out / "train_labels.npz")
    extra_maps, extra_labels, extra_mask = extra_rows(args, concepts, release_aliases(args, concepts))
    outputs = top_outputs(net, load_maps(args, "train") + extra_maps)
    labels = np.concatenate([stored["labels"], extra_labels])
    mask = np.concatenate([stored["mask"], extra_mask])
    held_out = out_of_fold_fused(outputs, labels, mask, DETECTOR_C, args.seed)
    ap = {c: round(average_precision(held_out[:, j], labels[:, j], mask[:, j]), 4) for j, c in enumerate(concepts)}
    positives = {c: int(((labels[:, j] > 0.5) & (mask[:, j] > 0)).sum()) for j, c in enumerate(concepts)}
    path.write_text(json.dumps({"ap": ap, "positives": positives}, indent=1))


def step_evaluate(args, bundle: Path | None = None) -> dict:
    """Held-out photo AP per concept (each concept on the test photos of the sets that judge it)."""
    import numpy as np

    from vidconcept.metrics.ap import average_precision
    from vidconcept.model.bundle import build_network, bundle_calibration, bundle_detectors, read_config
    from vidconcept.model.detectors import fuse

    bundle = bundle or args.out / "bundle"
    config = read_config(bundle)
    net = build_network(bundle, config)
    net.cached_stages = args.cache_stages
    sets = load_sets(args, "test")  # each set's own labels: a merged concept is judged by each set's name for it
    if args.gray_test:  # the same photos, in the same order, as greyscale copies
        gray_maps, gray_of = load_gray_maps(args, "test")
        assert gray_of == list(range(len(gray_of))), "every test photo has its grey copy"
        outputs = top_outputs(net, gray_maps)
    else:
        outputs = top_outputs(net, load_maps(args, "test"))
    detectors = bundle_detectors(bundle, config)
    scores = fuse([d.predict(outputs[d.layer]) for d in detectors])
    calibration = bundle_calibration(bundle, config)
    if calibration is not None:
        scores = calibration.apply(scores)
    from vidconcept.model.names import resolve
    report, start = {"bundle": str(bundle), "sets": {}}, 0
    ap = {}
    for s in sets:
        rows = slice(start, start + len(s))
        per = {}
        for j, name in enumerate(s.concepts):
            concept = resolve(name, config.concepts, config.aliases)
            if concept is None or not (s.labels[:, j] > 0.5).any():
                continue
            per[concept] = round(average_precision(scores[rows, config.concepts.index(concept)], s.labels[:, j],
                                                   s.mask[:, j]), 4)
        if per:
            report["sets"][set_name(s.spec)] = {"photos": len(s), "map": round(float(np.mean(list(per.values()))), 4),
                                                "ap": per}
        for concept, value in per.items():
            ap.setdefault(concept, []).append(value)
        start += len(s)
    report["concepts"] = {c: round(float(np.mean(v)), 4) for c, v in sorted(ap.items())}
    report["map"] = round(float(np.mean(list(report["concepts"].values()))), 4)
    report["n_concepts"] = len(report["concepts"])
    report["photos"] = "greyscale copies" if args.gray_test else "as they are"
    (args.out / f"eval-{bundle.name}{'-graytest' if args.gray_test else ''}.json").write_text(json.dumps(report, indent=1))
    if args.record:
        record_photo_metrics(args, bundle, report)
    print(json.dumps({"map": report["map"], "n": report["n_concepts"],
                      "sets": {k: v["map"] for k, v in report["sets"].items()}}))
    return report


def record_photo_metrics(args, bundle: Path, report: dict) -> None:
    """The held-out photo APs in the bundle's config.json and MODEL.md, with the command that made them."""
    import shlex

    from vidconcept.model.card import record_metrics

    command = shlex.join(["python", "benchmarks/release_default.py", *[a for a in sys.argv[1:] if a != "--record"]])
    dataset = "every photo set" + (" as greyscale copies" if args.gray_test else "")
    record_metrics(bundle, {"dataset": f"{dataset} (benchmarks/release_default.py)", "split": "held-out",
                            "metric": "ap", "images": sum(v["photos"] for v in report["sets"].values()),
                            "outputs": {"fused": {"map": report["map"], "ap": report["concepts"]}},
                            "summary": {"concepts": report["n_concepts"],
                                        **{f"{k} MAP": v["map"] for k, v in report["sets"].items()}}}, command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["cache", "names", "train", "detectors", "select", "evaluate", "baseline", "all"])
    parser.add_argument("--out", type=Path, default=Path("runs/release"))
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--init", type=Path, default=Path("models/default"))
    parser.add_argument("--cache-stages", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--teacher-c", type=float, default=0.03, help="C of the closed-world teacher detectors")
    parser.add_argument("--teacher-threshold", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--lr-mult", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-ap", type=float, default=0.0,
                        help="ship only concepts with this cross-validated AP on the training rows (select step)")
    parser.add_argument("--gray", type=float, default=0.0,
                        help="detectors: add greyscale copies of this share of the training photos (cache step first)")
    parser.add_argument("--gray-test", action="store_true",
                        help="cache: also the test photos' greyscale copies; evaluate/baseline: score those copies")
    parser.add_argument("--bundle", type=Path, help="evaluate this bundle (default: the one the options name)")
    parser.add_argument("--record", action="store_true", help="evaluate: store the result in the bundle's MODEL.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step in ("cache", "all"):
        step_cache(args)
    if args.step in ("names", "all"):
        step_names(args)
    if args.step in ("train", "all"):
        step_train(args)
    if args.step in ("detectors", "all"):
        step_detectors(args)
    if args.step in ("select", "all"):
        step_select(args)
    if args.step in ("evaluate", "all"):
        step_evaluate(args, args.bundle or bundle_dir(args, shipped_concepts(args)))
    if args.step == "baseline":
        step_evaluate(args, args.init)


if __name__ == "__main__":
    sys.exit(main())

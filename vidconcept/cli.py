"""Command-line interface: each command opens the index and calls one API method.

Options default to ``None`` and fall through to the library's defaults
(:mod:`vidconcept.config`), so there is one source of truth. Errors a user can act
on print one line and exit with the error's status (1 failure, 2 usage, 3 locked);
``VIDCONCEPT_DEBUG=1`` re-raises them with a traceback.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__  # noqa: F401
from .errors import UsageError, VidconceptError
from .timecode import clock

log = logging.getLogger("vidconcept")


# ---- output helpers -------------------------------------------------------
def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _print_results(results, as_json: bool) -> None:
    if as_json:
        _print_json(results.to_dict())
        return
    if not results.results:
        print("no matching shots")
        return
    for r in results.results:
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(r.concepts.items())[:3])
        print(f"{r.score:6.3f}  shot {r.shot_id:<6} {os.path.basename(r.video)} "
              f"[{clock(r.start_s)}-{clock(r.end_s)}]  {top}")
    print(f"({len(results.results)} of {results.total} matching shots)")


def _index(args, create: bool = False):
    from .api import Index

    return Index(args.index, model=getattr(args, "model", None), device=getattr(args, "device", None), create=create)


# ---- commands -------------------------------------------------------------
def cmd_ingest(args) -> int:
    with _index(args, create=True) as index:
        summary = index.ingest(args.paths, detector=args.detector, threshold=args.threshold,
                               min_shot_s=args.min_shot, progress=not args.quiet and not args.json,
                               engine_options={"address": args.ray_address} if args.ray_address else None,
                               **_given(args, "wait", "log_json", "engine", "workers"))
    data = summary.to_dict()
    if args.json:
        _print_json(data)
    else:
        rtf = f"{data['realtime_factor']}x realtime" if data["realtime_factor"] else "-"
        print(f"indexed {data['videos']} videos ({data['shots']} shots, {data['video_seconds']:.1f} s of video) "
              f"in {data['wall_s']:.1f} s ({rtf}); {data['unchanged']} unchanged, {len(data['failed'])} failed"
              + (" (listed above)" if data["failed"] else ""))
    return 1 if data["failed"] else 0


def cmd_upgrade(args) -> int:
    with _index(args) as index:
        summary = index.upgrade(progress=not args.quiet and not args.json, **_given(args, "wait"))
    data = summary.to_dict()
    if args.json:
        _print_json(data)
    elif data["up_to_date"]:
        print(f"{index.root} is already at model {data['model']} (version {data['version']})")
    else:
        print(f"upgraded {index.root} to model {data['model']} (version {data['version']}): {data['videos']} videos "
              f"({data['shots']} shots) rescored in {data['wall_s']:.1f} s"
              + (f", {data['resumed']} done before" if data["resumed"] else "")
              + f"; concepts +{len(data['concepts_added'])} -{len(data['concepts_dropped'])}; "
              f"{len(data['user_concepts'])} user concepts retrained; {len(data['failed'])} failed"
              + (" (listed above)" if data["failed"] else ""))
    return 1 if data["failed"] else 0


def cmd_reindex(args) -> int:
    with _index(args) as index:
        n = index.reindex(**_given(args, "wait"))
    print(f"rebuilt {index.root}/vectors.faiss with {n} shot vectors")
    return 0


def cmd_prune(args) -> int:
    with _index(args) as index:
        paths = index.prune(**_given(args, "wait"))
    for p in paths:
        print(f"pruned {p}")
    print(f"{len(paths)} missing videos pruned")
    return 0


def cmd_shots(args) -> int:
    from .video import detect_shots

    result = detect_shots(args.video, detector=args.detector, threshold=args.threshold, min_shot_s=args.min_shot)
    data = result.to_json()
    if args.json:
        _print_json(data)
    else:
        for i, s in enumerate(data["shots"]):
            print(f"{i:4d}  frames {s['start_frame']:>7}-{s['end_frame']:<7} {clock(s['start_s'])}-{clock(s['end_s'])}")
        print(f"{len(data['shots'])} shots, {data['frames']} frames at {data['fps']:.3f} fps")
    return 0


def cmd_search(args) -> int:
    with _index(args) as index:
        _print_results(index.search(args.query, **_given(args, "top", "min_score", "offset")), args.json)
    return 0


def cmd_similar(args) -> int:
    if (args.shot is None) == (args.image is None):
        raise UsageError("give exactly one of --shot ID or --image PATH")
    with _index(args) as index:
        _print_results(index.similar(shot=args.shot, image=args.image, **_given(args, "top")), args.json)
    return 0


def cmd_concepts(args) -> int:
    from .api import Index
    from .config import resolve_index_dir

    root = resolve_index_dir(args.index)
    if (root / "index.db").exists():
        with Index(root) as index:
            rows = index.concepts()
    else:
        from .config import resolve_model_dir
        from .model import read_config

        from .model.names import aliases_by_concept

        config = read_config(resolve_model_dir(args.model))
        aliases = aliases_by_concept(config.aliases)
        rows = [{"name": c, "aliases": aliases.get(c, [])} for c in config.concepts]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print("\t".join([r["name"], *([str(r["shots"])] if "shots" in r else []), ", ".join(r["aliases"])]).rstrip())
    return 0


def cmd_info(args) -> int:
    with _index(args) as index:
        data = index.info()
    if args.json:
        _print_json(data)
    else:
        for k, v in data.items():
            print(f"{k:14} {v}")
    return 0


def cmd_train(args) -> int:
    from .model.train import train

    out = train(backbone=args.backbone, strategy=args.strategy, datasets=args.dataset, out=args.out,
                repeat=dict(args.repeat or []),
                **_given(args, "epochs", "lr_mult", "batch_size", "lr", "image_size", "seed", "device", "resume",
                         "split", "cache_stages", "workers", "weights", "crop_pct", "crop_mode", "init",
                         "train_size", "precision", "detector_c"))
    print(f"model bundle written to {out}")
    return 0


def cmd_refit_detectors(args) -> int:
    from .model.train import refit_detectors

    out = refit_detectors(args.bundle, datasets=args.dataset,
                          **_given(args, "split", "crop_mode", "batch_size", "device", "detector_c", "open_world",
                                   "calibrate", "cache", "background"))
    print(f"LR detectors of {out} fitted again; evaluate it to record new metrics")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate

    data = evaluate(args.model, args.dataset, **_given(args, "split", "metric", "device", "limit", "cache"))
    if args.record:
        import shlex

        from .model.card import record_metrics

        # the command that reproduces the numbers: this one, without --record (and --cache, which changes no number)
        argv = list(args.argv or sys.argv[1:])
        argv = [a for i, a in enumerate(argv) if a != "--record" and a != "--cache" and (i == 0 or argv[i - 1] != "--cache")
                and not a.startswith("--cache=")]
        command = shlex.join(["vidconcept", *argv])
        record_metrics(args.model, data, command)
    if args.json:
        _print_json(data)
    else:
        for name, out in data["outputs"].items():
            print(f"{name:20} MAP {out['map']:.4f}")
    return 0


def cmd_serve(args) -> int:
    from .web.app import serve

    serve(index=args.index, model=args.model, read_only=args.read_only, allowed_hosts=args.allowed_host or (),
          **_given(args, "host", "port"))
    return 0


def cmd_user(args) -> int:
    """``user add|remove|list|passwd|role|token|tokens|revoke``: the accounts of a served index."""
    with _index(args) as index:
        if args.action == "add":
            data = asdict(index.add_user(args.name, _password(args), args.role or "viewer"))
        elif args.action == "remove":
            index.remove_user(args.name)
            data = {"removed": args.name}
        elif args.action == "passwd":
            data = asdict(index.set_password(args.name, _password(args)))
        elif args.action == "role":
            data = asdict(index.set_role(args.name, args.role))
        elif args.action == "token":
            token, secret = index.add_token(args.name, args.label)
            data = asdict(token) | {"secret": secret}
        elif args.action == "revoke":
            data = asdict(index.revoke_token(args.token_id))
        elif args.action == "tokens":
            data = [asdict(t) for t in index.tokens(args.name)]
        else:
            data = [asdict(u) for u in index.users()]
    if args.json:
        _print_json(data)
    elif args.action == "list":
        for u in data:
            print(f"{u['name']:20} {u['role']:8} since {u['created_at']}")
    elif args.action == "tokens":
        for t in data:
            print(f"{t['id']:<5} {t['user']:20} {t['label'] or '-':20} since {t['created_at']}")
    elif args.action == "token":
        print(f"token {data['id']} for {data['user']} (shown once; send it as 'Authorization: Bearer …'):")
        print(data["secret"])
    else:
        print(f"{args.action}: {data.get('name') or data.get('removed') or data.get('user')} done")
    return 0


def _password(args) -> str:
    """The password from one line of standard input (``--password-stdin``, for scripts) or typed twice."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the two passwords differ; run the command again")
    return first


def cmd_audit(args) -> int:
    """Who changed what and when: labels, concepts, accounts, sign-ins (newest first)."""
    with _index(args) as index:
        rows = [e.to_dict() for e in index.audit(**_given(args, "limit", "target", "user"))]
    if args.json:
        _print_json(rows)
    elif args.csv:
        import csv

        out = csv.DictWriter(sys.stdout, ["id", "at", "user", "action", "target", "detail"], lineterminator="\n")
        out.writeheader()
        out.writerows(r | {"detail": json.dumps(r["detail"])} for r in rows)
    else:
        for r in rows:
            detail = " ".join(f"{k}={v}" for k, v in r["detail"].items())
            print(f"{r['at']}  {r['user']:16} {r['action']:15} {r['target'] or '-':16} {detail}")
    return 0


def cmd_export(args) -> int:
    from .api import Index
    from .export import export

    with Index(args.index) as index:
        export(index, target=args.target, query=args.query, fmt=args.format, out=args.output,
               **_given(args, "concepts", "min_score", "run_id"))
    return 0


def cmd_concept(args) -> int:
    """``concept add|refine|remove|suggest|show|rescore``: user concepts (see :mod:`vidconcept.concepts`)."""
    from . import concepts

    with _index(args) as index:
        if args.action == "add":
            data = concepts.add_concept(index, args.name, args.positive or [], args.negative or [], args.image or [],
                                        **_given(args, "wait")).to_dict()
        elif args.action == "refine":
            data = concepts.refine_concept(index, args.name, args.positive or [], args.negative or [],
                                           **_given(args, "wait")).to_dict()
        elif args.action == "remove":
            concepts.remove_concept(index, args.name, **_given(args, "wait"))
            data = {"removed": args.name}
        elif args.action == "suggest":
            data = concepts.suggest(index, args.name, **_given(args, "count"))
        elif args.action == "rescore":
            data = {"rescored": concepts.rescore(index, args.name, **_given(args, "wait"))}
        elif args.action == "undo":
            restored = concepts.undo(index, args.name, **_given(args, "wait"))
            data = restored.to_dict() if restored else {"removed": args.name}
        else:
            data = concepts.get_concept(index, args.name).to_dict()
    if args.json or args.action == "show":
        _print_json(data)
    elif args.action == "suggest":
        print("label next: " + " ".join(map(str, data["next"])))
    elif args.action == "remove" or (args.action == "undo" and "removed" in data):
        print(f"removed concept {args.name}")
    elif args.action == "rescore":
        print(f"re-scored every shot for {len(data['rescored'])} user concepts: {', '.join(data['rescored'])}")
    else:
        print(f"concept {data['name']}: {len(data['positive'])} positive, {len(data['negative'])} negative "
              f"(+{data['sampled_negatives']} sampled) labels; {data['scored']} shots scored")
    return 0


def _sharded(args):
    from .shards import ShardedIndex

    return ShardedIndex(args.manifest, model=getattr(args, "model", None), device=getattr(args, "device", None),
                        ray_address=args.ray_address,
                        **_given(args, "serve", "partial", "timeout"))


def _print_sharded(results, as_json: bool) -> None:
    if as_json:
        _print_json(results.to_dict())
        return
    for r in results.results:
        print(f"{r.score:6.3f}  {r.shard}:{r.shot_id:<6} {os.path.basename(r.video)} [{clock(r.start_s)}-{clock(r.end_s)}]")
    print(f"({len(results.results)} of {results.total} matching shots)" if results.results else "no matching shots")
    if results.unavailable:
        print(f"partial: shards {', '.join(results.unavailable)} did not answer", file=sys.stderr)


def cmd_shards(args) -> int:
    """``vidconcept shards ACTION MANIFEST …``: a sharded archive (docs/shards.md); each action is one
    :class:`~vidconcept.shards.ShardedIndex` method."""
    if args.action == "init":
        from .shards import ShardedIndex

        manifest = ShardedIndex.init(args.manifest, count=args.count, paths=args.shard, **_given(args, "prefix"))
        print(f"wrote {manifest.path}: {len(manifest.shards)} shards ({', '.join(s.name for s in manifest.shards)})")
        return 0
    with _sharded(args) as archive:
        if args.action == "ingest":
            summary = archive.ingest(args.paths, progress=not args.quiet and not args.json,
                                     **_given(args, "engine", "workers", "wait"))
            data = summary.to_dict()
            _print_json(data) if args.json else print(
                f"indexed {data['videos']} videos ({data['shots']} shots) in {data['wall_s']:.1f} s; "
                f"{data['unchanged']} unchanged, {len(data['failed'])} failed")
            return 1 if data["failed"] else 0
        if args.action == "search":
            _print_sharded(archive.search(args.query, **_given(args, "top", "offset", "min_score", "video")), args.json)
        elif args.action == "similar":
            _print_sharded(archive.similar(shot=args.shot, image=args.image, **_given(args, "top")), args.json)
        else:
            info = archive.info()
            _print_json(info) if args.json else print("\n".join(
                [f"{s['name']:<12} {s['videos']:>8} videos {s['shots']:>10} shots  {s['path']}" for s in info["shards"]]
                + [f"{'all':<12} {info['videos']:>8} videos {info['shots']:>10} shots"
                   + (f"  (unavailable: {', '.join(info['unavailable'])})" if info["unavailable"] else "")]))
    return 0


def _given(args, *names: str) -> dict:
    """Only the options the user set: unset ones fall through to the library's defaults."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


# ---- parser ---------------------------------------------------------------
def _repeat_option(value: str) -> tuple[str, int]:
    spec, sep, times = value.rpartition("=")
    if not sep or not spec or not times.isdigit():
        raise argparse.ArgumentTypeError(f"expected SPEC=N (e.g. folder:data/scene15=3), got {value!r}")
    return spec, int(times)


def _add_crop_mode(p: argparse.ArgumentParser) -> None:
    p.add_argument("--crop-mode", choices=["center", "none"],
                   help="inference crop: a centred square, or none (the whole image, shorter side at the input size)")


def _add_detector_c(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector-c", metavar="C|cv",
                   help="LR detectors' inverse regularisation: a number (default 1), 'cv': each layer's own C "
                        "by 3-fold cross-validation on the training photos, or LAYER=C,… (e.g. features=0.03,ext1=0.1)")


def _add_index(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", help="index folder (default: $VIDCONCEPT_INDEX or ./vidconcept-index)")


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model bundle folder (default: $VIDCONCEPT_MODEL or models/default)")
    p.add_argument("--device", help="cuda or cpu (default: cuda when present)")


def _add_shot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", help="shot detector name (see vidconcept.video.list_detectors())")
    p.add_argument("--threshold", type=float, help="detector threshold (default: the detector's own)")
    p.add_argument("--min-shot", type=float, metavar="SECONDS", help="minimum shot length in seconds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidconcept", description="Video concept-detection indexing and search.")
    parser.add_argument("--version", action="version", version=f"vidconcept {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="index video files and folders (idempotent)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    _add_index(p), _add_model(p), _add_shot_options(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--wait", type=float, metavar="SECONDS",
                   help="wait this long for another ingest's lock (default: exit with status 3 at once)")
    p.add_argument("--log-json", metavar="FILE", help="append one JSON line per file to FILE (for cron)")
    p.add_argument("--workers", type=int, help="videos decoded in parallel processes (default: half the cores)")
    p.add_argument("--engine", help="local (default) or ray")
    p.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: start a local Ray runtime)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("upgrade", help="move the index to another model version in place (keeps shots, ids, "
                       "user concepts; resumable)")
    _add_index(p), _add_model(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--wait", type=float, metavar="SECONDS", help="wait this long for another writer's lock")
    p.set_defaults(func=cmd_upgrade)

    p = sub.add_parser("reindex", help="rebuild the FAISS vectors from the database")
    _add_index(p)
    p.add_argument("--wait", type=float, metavar="SECONDS")
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("prune", help="drop videos whose files are gone (status missing) from the index")
    _add_index(p)
    p.add_argument("--wait", type=float, metavar="SECONDS")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("shots", help="detect shot boundaries of one video (no model, no index)")
    p.add_argument("video")
    _add_shot_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_shots)

    p = sub.add_parser("search", help="rank shots by a concept query, e.g. 'dog AND street NOT person'")
    p.add_argument("query")
    _add_index(p)
    p.add_argument("--top", type=int, help="results per page (default 20)")
    p.add_argument("--offset", type=int, help="skip this many results (paging)")
    p.add_argument("--min-score", type=float, help="only shots scoring at least this (0..1)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("similar", help="shots that look like a shot of the index or an image")
    p.add_argument("--shot", type=int)
    p.add_argument("--image")
    _add_index(p), _add_model(p)
    p.add_argument("--top", type=int, help="number of results (default 20)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("concepts", help="list the concepts (of the index, else of the model)")
    _add_index(p)
    p.add_argument("--model", help="model bundle folder when there is no index")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_concepts)

    p = sub.add_parser("info", help="counts of videos, shots and concepts in an index; its model version and upgrades")
    _add_index(p)
    p.add_argument("--model", help="bundle to check for an upgrade (default: $VIDCONCEPT_MODEL or models/default)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="fine-tune a concept model (FT1-def, FT2-reN, FT3-exN-D) and write a bundle")
    p.add_argument("--backbone", required=True)
    p.add_argument("--strategy", required=True, help="ft1-def, ft2-reN, ft3-ex1-D or ft3-ex2-D")
    p.add_argument("--dataset", action="append", required=True, metavar="SPEC", help="voc:DIR, folder:DIR or csv:FILE (repeatable)")
    p.add_argument("--out", required=True, help="bundle folder to write, e.g. models/mine")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr-mult", type=float, help="learning-rate multiplier k of the pretrained layers")
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--image-size", type=int, help="inference input size (default: the backbone's)")
    p.add_argument("--train-size", type=int, help="random training crop size (default: the image size)")
    p.add_argument("--precision", choices=["auto", "fp32"],
                   help="auto (default): fp16 autocast on CUDA, bf16 on CPUs with native bfloat16")
    p.add_argument("--repeat", action="append", type=_repeat_option, metavar="SPEC=N",
                   help="the photos of data set SPEC appear N times an epoch (repeatable; the LR detectors see them once)")
    p.add_argument("--seed", type=int)
    p.add_argument("--split", help="data set split (default: train)")
    p.add_argument("--cache-stages", type=int, metavar="K",
                   help="freeze the first K backbone stages and compute them once (fast CPU training)")
    p.add_argument("--workers", type=int, help="data loader processes")
    p.add_argument("--weights", help="backbone weights: a state_dict FILE (googlenet, alexnet, …) or 'none' "
                                     "for random init (default: the backbone's pretrained weights)")
    p.add_argument("--crop-pct", type=float, help="inference centre crop (1.0: the whole shorter side)")
    p.add_argument("--init", metavar="BUNDLE", help="start from this fine-tuned bundle's network (same backbone, "
                                                    "strategy and concepts) instead of the backbone's weights")
    _add_crop_mode(p)
    _add_detector_c(p)
    p.add_argument("--device")
    p.add_argument("--resume", action="store_true", default=None)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("refit-detectors", help="fit a fine-tuned bundle's LR detectors again (other photos or crop mode)")
    p.add_argument("bundle", help="bundle folder, e.g. models/default")
    p.add_argument("--dataset", action="append", metavar="SPEC", help="data sets (default: those it was trained on)")
    p.add_argument("--split", help="data set split (default: train)")
    _add_crop_mode(p)
    _add_detector_c(p)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device")
    p.add_argument("--open-world", action="store_true", default=None,
                   help="a photo of one set is a negative for another set's concepts unless it may show them")
    p.add_argument("--calibrate", choices=["auto", "platt", "isotonic"],
                   help="calibrate the fused scores per concept on out-of-fold scores (auto: lower held-out ECE)")
    p.add_argument("--cache", metavar="DIR", help="keep the data sets' layer outputs here for the next refit")
    p.add_argument("--background", type=int, metavar="N",
                   help="add N generated background frames (title cards, text, charts, black…): negatives for every concept")
    p.set_defaults(func=cmd_refit_detectors)

    p = sub.add_parser("serve", help="local web UI and REST API over an index")
    _add_index(p)
    p.add_argument("--model", help="model bundle used for image queries (default: models/default)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--read-only", action="store_true",
                   help="no write endpoint (labels, concepts); lets another address serve without accounts")
    p.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="a host name clients use to reach the server (repeatable; e.g. behind a reverse proxy)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("audit", help="who changed what and when: labels, concepts, accounts, sign-ins")
    _add_index(p)
    p.add_argument("--limit", type=int, help="only the newest N entries")
    p.add_argument("--target", help="only entries about this concept or user")
    p.add_argument("--user", help="only what this user did")
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", action="store_true", help="export as CSV")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("export", help="shot lists as csv, json, edl (CMX 3600), html contact sheet or trecvid run")
    p.add_argument("target", nargs="?", metavar="VIDEO_OR_ID", help="a video path or id of the index")
    p.add_argument("--query", help="export the shots this concept query returns")
    p.add_argument("--format", required=True, choices=["csv", "json", "edl", "html", "trecvid"])
    p.add_argument("--concepts", nargs="+", metavar="NAME", help="concept scores to include (default: top concepts)")
    p.add_argument("--min-score", type=float)
    p.add_argument("--run-id", help="run id of a trecvid run file")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    _add_index(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("evaluate", help="AP / MAP (or TRECVID infAP) of a model bundle on a data set")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True, metavar="SPEC")
    p.add_argument("--split")
    p.add_argument("--metric", choices=["ap", "infap"])
    p.add_argument("--limit", type=int, help="evaluate on the first N images only")
    p.add_argument("--device")
    p.add_argument("--cache", metavar="DIR", help="keep the data set's layer outputs here (same network: read back)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--record", action="store_true",
                   help="store the result and this command in the bundle's config.json and MODEL.md")
    p.set_defaults(func=cmd_evaluate)

    _add_concept_group(sub)
    _add_user_group(sub)
    _add_shards_group(sub)
    return parser


def _add_shards_group(sub) -> None:
    """``vidconcept shards …``: an archive split by video into index folders (docs/shards.md)."""
    group = sub.add_parser("shards", help="an archive split by video into shard indexes, searched as one "
                           "(init, ingest, search, similar, info)")
    group = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    helps = {"init": "write a manifest over new or existing shard indexes",
             "ingest": "index videos, each into its shard", "search": "rank the shots of all shards",
             "similar": "shots of all shards that look like a shot or an image",
             "info": "counts per shard and in all"}
    for action, text in helps.items():
        p = group.add_parser(action, help=text)
        p.add_argument("manifest", metavar="MANIFEST", help="the manifest file, e.g. archive/shards.json")
        if action == "init":
            p.add_argument("--count", type=int, help="make this many new shards beside the manifest")
            p.add_argument("--shard", action="append", metavar="INDEX", help="an existing index folder (repeatable)")
            p.add_argument("--prefix", help="new shards' names: PREFIX-00, PREFIX-01 … (default shard)")
            p.set_defaults(func=cmd_shards)
            continue
        if action == "ingest":
            p.add_argument("paths", nargs="+", metavar="PATH")
            p.add_argument("--engine", help="each shard's ingest engine: local (default) or ray")
            p.add_argument("--workers", type=int, help="videos decoded in parallel processes per shard")
            p.add_argument("--wait", type=float, metavar="SECONDS", help="wait this long for a shard's write lock")
            p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        elif action == "search":
            p.add_argument("query")
            p.add_argument("--top", type=int, help="results per page (default 20)")
            p.add_argument("--offset", type=int, help="skip this many results (paging)")
            p.add_argument("--min-score", type=float, help="only shots scoring at least this (0..1)")
            p.add_argument("--video", metavar="SHARD:ID", help="only this video's shots")
        elif action == "similar":
            p.add_argument("--shot", metavar="SHARD:ID")
            p.add_argument("--image")
            p.add_argument("--top", type=int, help="number of results (default 20)")
        if action in ("ingest", "similar"):
            _add_model(p)
        p.add_argument("--serve", choices=["local", "ray"], help="shards on threads of this process (default) "
                       "or one Ray actor each")
        p.add_argument("--ray-address", metavar="ADDR", help="with --serve ray: join this cluster")
        p.add_argument("--partial", action="store_true", default=None,
                       help="leave out shards that fail or time out (named in the output) instead of failing")
        p.add_argument("--timeout", type=float, metavar="SECONDS", help="how long a shard may take (default 60)")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_shards)


def _add_user_group(sub) -> None:
    """``vidconcept user …``: accounts, roles and API tokens of a served index (docs/web.md)."""
    group = sub.add_parser("user", help="accounts of a served index (add, remove, list, passwd, role, token, "
                           "tokens, revoke)")
    group = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    helps = {"add": "create an account", "remove": "delete an account, its tokens and sessions",
             "list": "the accounts and roles", "passwd": "set a new password (signs the user's browsers out)",
             "role": "change an account's role", "token": "make an API token for scripts (shown once)",
             "tokens": "the API tokens (not their secrets)", "revoke": "delete an API token"}
    for action, text in helps.items():
        p = group.add_parser(action, help=text)
        if action == "revoke":
            p.add_argument("token_id", type=int, metavar="TOKEN_ID")
        elif action != "list":
            p.add_argument("name", metavar="NAME", nargs="?" if action == "tokens" else None, help="user name")
        if action in ("add", "role"):
            p.add_argument("--role", required=action == "role",
                           help="viewer (search, play), editor (also labels and concepts), admin (also accounts)")
        if action in ("add", "passwd"):
            p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        if action == "token":
            p.add_argument("--label", help="what the token is for, e.g. 'nightly export'")
        _add_index(p)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_user)


def _add_concept_group(sub) -> None:
    """``vidconcept concept …``: train, refine, remove and label-suggest user concepts."""
    group = sub.add_parser("concept", help="user concepts: train a detector from labelled shots (add, refine, "
                           "remove, suggest, show, rescore, undo)")
    group = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    helps = {"add": "train a new concept from labelled shots and score every shot",
             "refine": "add labels and retrain", "remove": "delete a user concept and its scores",
             "suggest": "shots worth labelling next", "show": "labels, dates and model of a user concept",
             "rescore": "score shots ingested since with the stored detectors (no retraining)",
             "undo": "put a concept back as it was before its last change (see `vidconcept audit`)"}
    for action, text in helps.items():
        p = group.add_parser(action, help=text)
        optional = action == "rescore"
        p.add_argument("name", metavar="NAME", nargs="?" if optional else None,
                       help="concept name: letters, digits, _ or -" + (" (default: all)" if optional else ""))
        _add_index(p)
        if action in ("add", "refine"):
            p.add_argument("--positive", type=int, nargs="+", metavar="SHOT_ID", help="shots showing the concept")
            p.add_argument("--negative", type=int, nargs="+", metavar="SHOT_ID", help="shots not showing it")
        if action == "add":
            p.add_argument("--image", nargs="+", metavar="PATH", help="example images showing the concept")
            _add_model(p)
        if action in ("add", "refine", "remove", "rescore", "undo"):
            p.add_argument("--wait", type=float, metavar="SECONDS", help="wait this long for another writer's lock")
        if action == "suggest":
            p.add_argument("--count", type=int, help="number of shots (default 10)")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_concept)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = None if argv is None else list(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="vidconcept: %(levelname)s: %(message)s")
    try:
        return args.func(args)
    except VidconceptError as exc:
        if os.environ.get("VIDCONCEPT_DEBUG"):
            raise
        print(f"vidconcept: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vidconcept: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry: :func:`main`, then exit without the interpreter's teardown.

    Every cleanup still runs (``atexit`` handlers, log and stream flushes; the index is
    closed by then), only the module teardown is skipped: 0.41 s with torch, FAISS and
    PyAV loaded (0.97 s with timm too), a twentieth of a 5-minute video's whole ingest.
    """
    import atexit

    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (e.g. `| head`): nothing left to say
            code = code or 1
    os._exit(code)


if __name__ == "__main__":
    run()

"""Move an index to another model version in place (``vidconcept upgrade``, ``Index.upgrade``).

Videos and shots stay (same ids, same boundaries); only what the model computes is
redone. A version that keeps the backbone (``meta.model.backbone_sha1``; new detectors,
calibration or concept layer) reruns only the layers above the pooled features, on the
stored features and their norms: no image is read. Otherwise every shot's concept scores
and feature vector are computed again from its keyframe. The stored
keyframe JPEG is what ingest scored (:func:`~vidconcept.video.keyframes.save_keyframe`),
so where it is at the size ingest stores today it is rescored as it is — no video is
opened. Older, smaller keyframes are replaced by the frame at the recorded keyframe time,
read by seeking in the video (no full decode, no shot detection); a shot indexed before
those times were recorded gets its middle frame. User concepts are retrained from their
labels (kept by shot id) on the new features.

Commits: **all at once.** The new scores and features are staged video by video
(``upgrade_*`` tables, one transaction per video), then swapped in with the concept
changes and the retrained user concepts in one transaction. Until that swap every search
answers from the old model's scores, and never from a mix of two versions; after a crash
(even ``kill -9``) the next ``vidconcept upgrade`` with the same bundle goes on from the
videos already staged (with another bundle it starts over). Ingest refuses to run while an
upgrade is unfinished, since its new videos would be scored by the old version.

Example::

    summary = Index("vidconcept-index", model="models/default").upgrade()
    summary.to_dict()   # {"videos": 3, "shots": 12, "concepts_added": [...], ...}
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import config
from .errors import UsageError, VidconceptError
from .index.store import Store, now_iso
from .engines.base import progress_bar
from .ingest import model_version, same_version

log = logging.getLogger(__name__)

#: Keyframes per model call (on the CPU the model runs them in cache-sized chunks: ``CPU_CHUNK_PIXELS``).
BATCH = 32
STAGING = ("upgrade_shot_scores", "upgrade_features", "upgrade_videos", "upgrade_concepts")


@dataclass
class UpgradeSummary:
    """What an upgrade did (``--json`` prints :meth:`to_dict`)."""

    model: str
    version: str | None
    previous: dict | None = None
    up_to_date: bool = False
    videos: int = 0  # staged by this run
    resumed: int = 0  # staged by an earlier, interrupted run
    shots: int = 0
    from_features: int = 0  # same backbone: the layers above it rerun on the stored features
    from_keyframes: int = 0  # rescored from the stored keyframe JPEG
    from_video: int = 0  # read by seeking in the video (keyframe rewritten at today's size)
    small_keyframes: int = 0  # video unreadable: the smaller stored keyframe was used (reported)
    failed: list[dict] = field(default_factory=list)  # videos that could not be rescored
    concepts_added: list[str] = field(default_factory=list)
    concepts_dropped: list[str] = field(default_factory=list)
    user_concepts: list[str] = field(default_factory=list)  # retrained
    wall_s: float = 0.0
    timing: dict = field(default_factory=lambda: {"frames_s": 0.0, "model_s": 0.0, "stage_write_s": 0.0, "swap_s": 0.0})

    def to_dict(self) -> dict:
        out = asdict(self)
        out["wall_s"] = round(self.wall_s, 3)
        out["timing"] = {k: round(v, 3) for k, v in self.timing.items()}
        return out


def status(store: Store, bundle: str | Path | None = None) -> dict:
    """The index's model version, an unfinished upgrade, and whether ``bundle`` (default: the
    configured model) is another version, so that ``vidconcept upgrade`` has work to do."""
    from .ingest import bundle_version

    known, pending = store.get_meta("model"), store.get_meta("upgrade")
    out: dict = {"model_version": (known or {}).get("bundle_sha1"), "upgrade_pending": None, "upgrade_available": None}
    if pending:
        done = store.db.execute("SELECT count(*) FROM upgrade_videos").fetchone()[0]
        out["upgrade_pending"] = {"to": pending["to"]["name"], "version": pending["to"].get("bundle_sha1"),
                                  "bundle": pending.get("bundle"), "videos_done": done,
                                  "videos": _count_videos(store), "started_at": pending.get("started_at")}
    folder = config.resolve_model_dir(bundle)
    if known and (folder / "config.json").is_file():
        try:
            other = bundle_version(folder)
        except VidconceptError:
            return out
        other.setdefault("feature_dim", known.get("feature_dim"))
        if not same_version(known, other):
            out["upgrade_available"] = {"model": other["name"], "version": other["bundle_sha1"], "bundle": str(folder)}
    return out


def _count_videos(store: Store) -> int:
    return store.db.execute("SELECT count(*) FROM videos WHERE id IN (SELECT DISTINCT video_id FROM shots)").fetchone()[0]


class Upgrader:
    """Rescores one index with ``model`` (see the module doc); the caller holds the write lock."""

    def __init__(self, store: Store, model, *, batch_size: int = BATCH, progress: bool = False,
                 after_video: Callable[[int], None] | None = None):
        self.store, self.model, self.batch_size, self.progress = store, model, batch_size, progress
        self.after_video = after_video  # test hook: called after each video is staged
        self.target = model_version(model)
        self.summary = UpgradeSummary(model.name, self.target.get("bundle_sha1"))

    def run(self) -> UpgradeSummary:
        start = time.perf_counter()
        store, summary = self.store, self.summary
        known = store.get_meta("model")
        if known is None:
            raise UsageError(f"{store.root}: the index has no model yet; `vidconcept ingest` builds it with one")
        summary.previous = known
        # a version that keeps the backbone computes the same features: only the layers above them rerun
        self.head_only = bool(known.get("backbone_sha1")) and known.get("backbone_sha1") == self.target.get("backbone_sha1") \
            and getattr(self.model, "head_only", False)
        if not self._begin(known):
            summary.up_to_date = True
            summary.wall_s = time.perf_counter() - start
            return summary
        todo = [v for v in store.db.query(
            "SELECT * FROM videos WHERE id IN (SELECT DISTINCT video_id FROM shots) "
            "AND id NOT IN (SELECT video_id FROM upgrade_videos) ORDER BY id")]
        summary.resumed = store.db.execute("SELECT count(*) FROM upgrade_videos").fetchone()[0]
        shots = store.db.execute("SELECT count(*) FROM shots WHERE video_id IN (SELECT id FROM videos WHERE id NOT IN "
                                 "(SELECT video_id FROM upgrade_videos))").fetchone()[0]
        bar = progress_bar(total=shots, desc="upgrade", unit="shot", disable=not self.progress)
        self._stage_all(todo, bar)
        t = time.perf_counter()
        self._swap()
        summary.timing["swap_s"] = time.perf_counter() - t
        summary.wall_s = time.perf_counter() - start
        return summary

    def _stage_all(self, todo: list[dict], bar) -> None:
        store = self.store
        try:
            for video in todo:
                self._stage(video)
                bar.update(store.db.execute("SELECT count(*) FROM shots WHERE video_id = ?", [video["id"]]).fetchone()[0])
                if self.after_video is not None:
                    self.after_video(video["id"])
        finally:
            bar.close()

    # ---- start / resume -----------------------------------------------------
    def _begin(self, known: dict) -> bool:
        """Record the upgrade (or check the one under way); False when there is nothing to do."""
        store, pending = self.store, self.store.get_meta("upgrade")
        if pending and pending["to"] != self.target:
            log.warning("%s: an unfinished upgrade to %s (version %s) is dropped for %s (version %s)", store.root,
                        pending["to"]["name"], pending["to"].get("bundle_sha1"), self.target["name"],
                        self.target.get("bundle_sha1"))
            pending = None
        if pending:
            log.info("%s: resuming the upgrade to %s", store.root, self.target["name"])
            return True
        if same_version(known, self.target) and known.get("feature_dim") == self.target["feature_dim"]:
            self._clear(drop_state=True)
            return False
        self._check_names()
        with store.db.atomic():
            self._clear(drop_state=False)
            store.db["upgrade_concepts"].insert_all(({"pos": i, "name": n} for i, n in enumerate(self.model.concepts)))
            store.set_meta("upgrade", {"to": self.target, "from": known, "started_at": now_iso(),
                                       "bundle": str(getattr(self.model, "bundle_dir", "") or "")})
        return True

    def _check_names(self) -> None:
        users = {c["name"].lower(): c["name"] for c in self.store.concepts() if c["source"] == "user"}
        clash = sorted(users[n.lower()] for n in self.model.concepts if n.lower() in users)
        if clash:
            raise UsageError(f"model {self.model.name!r} has concepts named like user concepts of this index "
                             f"({', '.join(clash)}): rename or remove those user concepts first")

    def _clear(self, drop_state: bool) -> None:
        with self.store.db.atomic():
            for table in STAGING:
                self.store.db.execute(f"DELETE FROM {table}")
            if drop_state:
                self.store.db.execute("DELETE FROM meta WHERE key = 'upgrade'")

    # ---- one video ----------------------------------------------------------
    def _stage(self, video: dict) -> None:
        store, timing = self.store, self.summary.timing
        shots = list(store.db.query("SELECT * FROM shots WHERE video_id = ? ORDER BY idx", [video["id"]]))
        t0 = time.perf_counter()
        stored = store.video_features(video["id"]) if self.head_only else None
        try:
            frames, sources = ([], {"features": len(shots)}) if stored is not None else self._frames(video, shots)
        except VidconceptError as exc:
            reason = str(exc).removeprefix(f"{video['path']}: ")
            log.error("%s: cannot be rescored: %s; its shots will have no scores after the upgrade "
                      "(ingest the file again, or `vidconcept prune` it)", video["path"], reason)
            self.summary.failed.append({"path": video["path"], "reason": reason})
            return
        t1 = time.perf_counter()
        if stored is not None:  # the stored float16 vectors stay as they are: the backbone is the same
            pred = self.model.predict_features(stored[1], stored[2])
            vectors = [f.tobytes() for f in stored[1]]
        else:
            pred = self.model.predict(frames, batch_size=self.batch_size)
            vectors = [f.astype(np.float16).tobytes() for f in pred.features]
        t2 = time.perf_counter()
        ids = np.array([s["id"] for s in shots], np.int64)
        with store.db.atomic():
            store.stage_upgrade_scores(ids, pred.scores)
            store.db.conn.executemany("INSERT OR REPLACE INTO upgrade_features (shot_id, vector, norm) VALUES (?, ?, ?)",
                                      zip(ids.tolist(), vectors, pred.norms.astype(float).tolist()))
            store.db["upgrade_videos"].insert({"video_id": video["id"], "shots": len(shots), "done_at": now_iso(),
                                               "source": json.dumps(sources)}, replace=True)
        timing["frames_s"] += t1 - t0
        timing["model_s"] += t2 - t1
        timing["stage_write_s"] += time.perf_counter() - t2
        self.summary.videos += 1
        self.summary.shots += len(shots)
        self.summary.from_features += sources.get("features", 0)
        self.summary.from_keyframes += sources.get("keyframe", 0)
        self.summary.from_video += sources.get("video", 0)
        self.summary.small_keyframes += sources.get("small_keyframe", 0)

    def _frames(self, video: dict, shots: list[dict]) -> tuple[list[np.ndarray], dict[str, int]]:
        """Each shot's keyframe as ingest scores it today: the stored JPEG when it is at today's
        size, else the frame read from the video (and stored), else the small JPEG (reported)."""
        from .video.keyframes import load_keyframe

        frames: list[np.ndarray | None] = [None] * len(shots)
        sources = {"keyframe": 0, "video": 0, "small_keyframe": 0}
        want = _keyframe_size(video)
        seek = []
        for i, shot in enumerate(shots):
            path = self.store.root / shot["keyframe"] if shot["keyframe"] else None
            if path is not None and want is not None and _jpeg_size(path) == want:
                frames[i] = load_keyframe(path)
                sources["keyframe"] += 1
            else:
                seek.append(i)
        if seek:
            try:
                for i, image in zip(seek, self._from_video(video, [shots[i] for i in seek])):
                    frames[i] = image
                sources["video"] += len(seek)
            except (VidconceptError, OSError) as exc:
                usable = [i for i in seek if shots[i]["keyframe"] and (self.store.root / shots[i]["keyframe"]).is_file()]
                if len(usable) < len(seek):
                    raise VidconceptError(f"{video['path']}: {exc}; and {len(seek) - len(usable)} shot(s) have no "
                                          "stored keyframe") from exc
                log.warning("%s: %s; rescoring %d shot(s) from their smaller stored keyframes (re-ingest the file "
                            "for full-size keyframes)", video["path"], exc, len(usable))
                for i in usable:
                    frames[i] = load_keyframe(self.store.root / shots[i]["keyframe"])
                sources["small_keyframe"] += len(usable)
        return frames, sources

    def _from_video(self, video: dict, shots: list[dict]) -> list[np.ndarray]:
        """The keyframes of ``shots`` read from the video at their recorded times (the middle of a
        shot indexed before times were recorded), stored at today's size; in ``shots`` order."""
        from .video.decode import FrameReader
        from .video.keyframes import save_keyframe

        times = [s["keyframe_s"] if s["keyframe_s"] is not None else (s["start_s"] + s["end_s"]) / 2 for s in shots]
        order = sorted(range(len(shots)), key=lambda i: times[i])
        out: list[np.ndarray | None] = [None] * len(shots)
        fps = video.get("fps") or 25.0
        with FrameReader(video["path"]) as reader:
            for i, (at, rgb) in zip(order, reader.frames_at([times[i] for i in order], config.KEYFRAME_MAX_SIDE)):
                shot = shots[i]
                rel = shot["keyframe"] or f"keyframes/upgrade-{video['id']}/{shot['idx']:05d}.jpg"
                out[i] = save_keyframe(rgb, self.store.root / rel)
                self.store.db["shots"].update(shot["id"], {"keyframe": rel, "keyframe_s": at,
                                                           "keyframe_frame": int(round(at * fps))})
        return out

    # ---- the swap -----------------------------------------------------------
    def _swap(self) -> None:
        """New scores, features, concepts and retrained user concepts in one transaction."""
        from .index.user_concepts import retrain_store
        from .index.columns import open_columns
        from .index.vectors import DIGEST_NAME, FAISS_NAME, open_vectors

        store, summary = self.store, self.summary
        old = {c["name"] for c in store.concepts() if c["source"] == "model"}
        new = list(self.model.concepts)
        summary.concepts_added = sorted(set(new) - old)
        summary.concepts_dropped = sorted(old - set(new))
        unstaged = store.db.execute("SELECT count(*) FROM shots WHERE video_id NOT IN "
                                    "(SELECT video_id FROM upgrade_videos)").fetchone()[0]
        for name in (FAISS_NAME, DIGEST_NAME):  # a crash after the commit must not find old vectors trusted
            (store.root / name).unlink(missing_ok=True)
        with store.db.atomic():
            db = store.db
            db.execute("DELETE FROM features")
            if summary.concepts_dropped:
                db.conn.executemany("DELETE FROM concepts WHERE source = 'model' AND name = ?",
                                    [(n,) for n in summary.concepts_dropped])
            store.ensure_concepts(new, source="model")
            store.swap_in_upgrade_scores()
            db.execute("INSERT INTO features (shot_id, vector, norm) SELECT shot_id, vector, norm FROM upgrade_features")
            store.bump_generation()  # the column store is stale from this commit on
            db.execute("UPDATE videos SET model = ? WHERE id IN (SELECT video_id FROM upgrade_videos)", [self.model.name])
            dropped = {k: v for k, v in (store.get_meta("dropped_concepts") or {}).items() if k not in {n.lower() for n in new}}
            at = now_iso()
            dropped |= {n.lower(): {"name": n, "model": self.model.name, "version": self.target.get("bundle_sha1"),
                                    "at": at} for n in summary.concepts_dropped}
            store.set_meta("dropped_concepts", dropped)
            # the new model's other names (a merged concept's old name among them: "coast" finds "sea" now)
            store.set_meta("aliases", dict(getattr(getattr(self.model, "config", None), "aliases", None) or {}))
            store.set_meta("model", self.target)
            store.set_meta("feature_dim", self.target["feature_dim"])
            store.set_meta("model_history", (store.get_meta("model_history") or []) + [
                {"from": summary.previous, "to": self.target, "at": at, "shots_unscored": unstaged}])
            summary.user_concepts = retrain_store(store, self.model)
            self._clear(drop_state=True)
        if unstaged:
            log.error("%s: %d shot(s) of %d video(s) could not be rescored and have no scores or features now "
                      "(listed in the summary's 'failed')", store.root, unstaged, len(summary.failed))
        open_vectors(store, None, rebuild=True)
        open_columns(store, rebuild=True)
        log.info("%s: upgraded to model %s (version %s): %d shots rescored, concepts +%d -%d, %d user concept(s) "
                 "retrained", store.root, self.model.name, self.target.get("bundle_sha1"), summary.shots,
                 len(summary.concepts_added), len(summary.concepts_dropped), len(summary.user_concepts))


def _keyframe_size(video: dict) -> tuple[int, int] | None:
    """(width, height) of the keyframe ingest stores today for this video (``None``: unknown)."""
    from .video.decode import fit_size

    if not video.get("width") or not video.get("height"):
        return None
    return fit_size(video["width"], video["height"], config.KEYFRAME_MAX_SIDE)


def _jpeg_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the JPEG header (no decode); ``None`` for a missing or unreadable file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError):
        return None

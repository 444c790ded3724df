"""The Python API: an :class:`Index` folder with the same verbs as the CLI.

Example::

    import vidconcept
    index = vidconcept.Index("vidconcept-index")
    index.ingest(["sample_videos/"])
    for hit in index.search("cat OR dog", top=5):
        print(hit.video, hit.start_s, hit.score)
    index.similar(shot=hit.shot_id)
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import config
from .errors import ModelError, UsageError
from .index.accounts import Account, Accounts, AuditEntry, Role, Token, local_actor
from .index.columns import Columns, open_columns
from .index.store import Store
from .index.vectors import open_vectors
from .model.names import aliases_by_concept
from .records import ShotHit
from .search.query import parse
from .search.rank import ColumnCache, rank

log = logging.getLogger(__name__)


#: One ranked shot: the record search, exports and the web share (its old name, kept).
SearchResult = ShotHit


@dataclass
class SearchResults(Sequence):
    """A page of results and how many shots match in all."""

    results: list[SearchResult]
    total: int

    def __getitem__(self, i):
        return self.results[i]

    def __len__(self) -> int:
        return len(self.results)

    def to_dict(self) -> dict:
        return {"total": self.total, "results": [r.to_dict() for r in self.results]}


class Index:
    """An index folder: SQLite database, FAISS vectors and keyframes.

    Args:
        path: the folder; ``None`` → ``$VIDCONCEPT_INDEX`` or ``./vidconcept-index``.
        model: model bundle folder used to ingest and to embed query images;
            ``None`` → ``$VIDCONCEPT_MODEL`` or ``models/default``.
        device: ``cuda``/``cpu``; ``None`` → CUDA when present.
        create: create the folder when it does not exist (ingest does; search does not).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, model: str | os.PathLike | None = None,
                 device: str | None = None, create: bool = False):
        self.root = config.resolve_index_dir(path)
        self.model_dir = config.resolve_model_dir(model)
        self.device = device
        self.store = Store.open(self.root, create=create)
        self._model = None
        self._vectors = None
        self._columns = None
        self._score_columns = Columns(self.store)
        self._vectors_version = None

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def model(self):
        if self._model is None:
            from .model import ConceptModel

            self._model = ConceptModel.load(self.model_dir, device=self.device)
        return self._model

    # ---- ingest -----------------------------------------------------------
    def ingest(self, paths: Sequence[str | os.PathLike] | str | os.PathLike, *, detector: str | None = None,
               threshold: float | None = None, min_shot_s: float | None = None, batch_size: int = 32,
               progress: bool = False, wait: float = 0.0, log_json: str | os.PathLike | None = None,
               engine: str | None = None, workers: int | None = None, engine_options: dict | None = None):
        """Index videos (files or folders); unchanged files are skipped. Returns an ``IngestSummary``.

        ``engine`` is ``local`` (default; ``workers`` decoding processes, default half
        the cores) or ``ray`` (``engine_options={"address": …}`` joins a cluster).
        Holds the index's write lock meanwhile: waits up to ``wait`` seconds for
        another ingest to finish, then raises :class:`~vidconcept.errors.IndexLockedError`.
        """
        from .engines import create_engine
        from .index.lock import write_lock
        from .ingest import Ingestor

        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        factory = functools.partial(create_engine, engine, workers=workers, **(engine_options or {}))
        ingestor = Ingestor(self.store, lambda: self.model, factory, detector=detector, threshold=threshold,
                            min_shot_s=min_shot_s, batch_size=batch_size, progress=progress,
                            log_json=Path(log_json) if log_json else None)
        with write_lock(self.root, wait):
            summary = ingestor.run(paths)
        self._vectors = None
        return summary

    def upgrade(self, *, batch_size: int = 32, progress: bool = False, wait: float = 0.0):
        """Move the index to this Index's model (``model=`` / ``$VIDCONCEPT_MODEL`` / the default)
        in place: same videos, shots and ids, new scores and features, user concepts retrained.
        Resumable; see :mod:`vidconcept.upgrade`. Returns an ``UpgradeSummary``."""
        from .index.lock import write_lock
        from .upgrade import Upgrader

        with write_lock(self.root, wait):
            summary = Upgrader(self.store, self.model, batch_size=batch_size, progress=progress).run()
        self._vectors = self._columns = None
        return summary

    def reindex(self, wait: float = 0.0) -> int:
        """Rebuild the FAISS file from the database; return the number of vectors."""
        from .index.lock import write_lock

        with write_lock(self.root, wait):
            vectors = open_vectors(self.store, None, rebuild=True)
            open_columns(self.store, rebuild=True)
        self._vectors = vectors
        return vectors.ntotal if vectors is not None else 0

    def prune(self, wait: float = 0.0) -> list[str]:
        """Drop videos marked ``missing`` (files gone) with their shots and keyframes."""
        from .index.lock import write_lock

        with write_lock(self.root, wait):
            paths = self.store.prune_missing()
            self._vectors = None
            open_vectors(self.store, None, rebuild=True)
            open_columns(self.store)
        return paths

    def rebuild_columns_in_background(self) -> None:
        """A stale column store (after a crashed ingest) is rebuilt in a thread while
        searches go through SQLite, instead of before the first search (for servers)."""
        self._score_columns.background = True

    # ---- search -----------------------------------------------------------
    def search(self, query: str, top: int = 20, min_score: float = 0.0, offset: int = 0,
               video: int | None = None) -> SearchResults:
        """Shots ranked by a concept query (see :mod:`vidconcept.search.query` for the
        language), optionally only those of one video (by id)."""
        hits, total = self.rank(query, top, min_score, offset, video)
        return SearchResults(self.results_for(hits), total)

    def rank(self, query: str, top: int = 20, min_score: float = 0.0, offset: int = 0,
             video: int | None = None) -> tuple[list[tuple[int, float]], int]:
        """The ranking :meth:`search` shows: ``([(shot_id, score), …], total)`` with the scores as
        ranked, not rounded for display (what merging several indexes orders by: :mod:`vidconcept.shards`)."""
        _check_page(top, offset)
        if not 0.0 <= min_score <= 1.0:
            raise UsageError(f"min score must be between 0 and 1, not {min_score}")
        if self._columns is None:
            self._columns = ColumnCache(self.store)
        within = None
        if video is not None:
            if self.store.video(int(video)) is None:
                raise UsageError(f"no video with id {video} in {self.root} (see `vidconcept info` / GET /api/videos)")
            within = self.store.shot_ids_of(int(video))
        return rank(self.store, parse(query), top=top, offset=offset, min_score=min_score,
                    cache=self._columns, within=within, columns=self._score_columns)

    def similar(self, shot: int | None = None, image: str | os.PathLike | np.ndarray | None = None,
                top: int = 20, vector: np.ndarray | None = None) -> SearchResults:
        """Nearest shots by feature similarity to a shot of the index, an image, or a feature
        ``vector`` (another index's shot: :meth:`feature`; how shards search each other)."""
        hits = self.nearest(shot, image, top, vector)
        return SearchResults(self.results_for(hits), len(hits))

    def nearest(self, shot: int | None = None, image: str | os.PathLike | np.ndarray | None = None,
                top: int = 20, vector: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The neighbours :meth:`similar` shows: ``[(shot_id, similarity), …]``, unrounded."""
        _check_page(top, 0)
        if sum(x is not None for x in (shot, image, vector)) != 1:
            raise UsageError("give exactly one of a shot id, an image or a feature vector")
        vectors = self.vectors()
        if vectors is None or vectors.ntotal == 0:
            return []
        if shot is not None:
            query = self.feature(shot)
            if query is None:
                raise UsageError(f"no shot with id {shot} in {self.root}")
        elif vector is not None:
            query = np.asarray(vector, np.float32).reshape(-1)
            if query.shape[0] != vectors.dim:
                raise UsageError(f"a {query.shape[0]}-d vector cannot search {self.root}, which holds {vectors.dim}-d features")
        else:
            model = self.model
            if model.feature_dim != vectors.dim:
                raise ModelError(
                    f"model {model.name!r} makes {model.feature_dim}-d features but the index holds {vectors.dim}-d ones: "
                    "use the model bundle the index was built with (--model DIR)")
            from .images import load_array

            query = model.predict([load_array(image)]).features[0]
        sims, ids = vectors.search(query[None, :], top + (shot is not None))
        return [(int(i), float(s)) for i, s in zip(ids[0], sims[0]) if i >= 0 and i != shot][:top]

    def feature(self, shot: int) -> np.ndarray | None:
        """The stored feature vector of a shot (what ``similar(shot=…)`` searches with), or ``None``."""
        return self.store.feature(int(shot))

    def use_model(self, model) -> None:
        """Use a concept model that is already loaded (a server's reader indexes share one)."""
        self._model = model

    @contextlib.contextmanager
    def snapshot(self) -> Iterator["Index"]:
        """Reads inside see one committed state of the database, whatever a writer commits meanwhile
        (SQLite WAL: a read transaction keeps its snapshot), so a page is never built from two."""
        self.store.db.execute("BEGIN")
        try:
            yield self
        finally:
            self.store.db.execute("COMMIT")

    def vectors(self):
        """The FAISS index, reopened when the database has changed since it was loaded."""
        version = self.store.version()
        if self._vectors is None or self._vectors_version != version:
            self._vectors = open_vectors(self.store, None)
            self._vectors_version = version
        return self._vectors

    def results_for(self, hits: list[tuple[int, float]]) -> list[SearchResult]:
        """:class:`~vidconcept.records.ShotHit` records for ``(shot_id, score)`` pairs, in order (unknown ids dropped)."""
        rows = self.store.shots([i for i, _ in hits])
        root = self.root.resolve()
        return [ShotHit.from_row(rows[i], root, score=round(score, 6),
                                 concepts=self.store.top_concepts(i, config.TOP_CONCEPTS))
                for i, score in hits if i in rows]

    def shot(self, shot_id: int, concepts: int = config.TOP_CONCEPTS) -> tuple[SearchResult, dict[str, float]] | None:
        """A shot (scored by its best concept) and its ``concepts`` best concept scores; ``None`` if unknown."""
        scores = self.store.top_concepts(int(shot_id), concepts)
        found = self.results_for([(int(shot_id), max(scores.values(), default=0.0))])
        return (found[0], scores) if found else None

    def keyframe_path(self, shot_id: int) -> Path | None:
        """The keyframe file of a shot, only if it lies inside the index folder and exists."""
        row = self.store.shots([int(shot_id)]).get(int(shot_id))
        if row is None or not row["keyframe"]:
            return None
        root = self.root.resolve()
        path = (root / row["keyframe"]).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None

    def video(self, video_id: int) -> dict | None:
        """One video's row (path, status, duration …), or ``None``."""
        return self.store.video(int(video_id))

    # ---- info -------------------------------------------------------------
    def info(self) -> dict:
        """Counts of videos, shots and concepts, the model the index was built with (and its
        version), how the last ingest ran it (``runtime``: precision and fusion chosen for its CPU,
        and why), an unfinished upgrade, and whether the configured model is another version."""
        from .upgrade import status

        return {"index": str(self.root), **self.store.counts(), "model": self.store.get_meta("model"),
                "runtime": self.store.get_meta("runtime"), **status(self.store, self.model_dir)}

    def concepts(self, min_score: float = 0.5) -> list[dict]:
        """Concepts of the index with how many shots score at least ``min_score`` (from the
        column store when it is current, else counted in SQLite) and the other names search
        accepts for each (the model's aliases)."""
        cs = self._score_columns.get()
        if cs is not None:
            floor = max(min_score, 1e-12)  # a score that is not stored is not counted
            counts = {cid: cs.count(cid, floor) for cid in cs.files}
        else:
            counts = self.store.concept_counts(min_score)
        aliases = aliases_by_concept(self.store.get_meta("aliases") or {})
        return [{"name": c["name"], "source": c["source"], "shots": counts.get(c["id"], 0),
                 "aliases": aliases.get(c["name"], [])} for c in self.store.concepts()]

    def videos(self) -> list[dict]:
        return list(self.store.videos())

    # ---- accounts and audit (serving a team: docs/web.md) --------------------
    @property
    def accounts(self) -> Accounts:
        """Accounts, tokens, sessions and the audit trail stored in this index."""
        return Accounts(self.store)

    def users(self) -> list[Account]:
        return self.accounts.users()

    def add_user(self, name: str, password: str, role: Role = "viewer", actor: str | None = None) -> Account:
        """Create an account (``viewer``, ``editor`` or ``admin``); the password is stored as a scrypt hash."""
        account = self.accounts.add_user(name, password, role)
        self.accounts.record(actor or local_actor(), "user-add", name, {"role": role})
        return account

    def remove_user(self, name: str, actor: str | None = None) -> None:
        """Delete an account, its API tokens and its sign-in sessions."""
        self.accounts.remove_user(name)
        self.accounts.record(actor or local_actor(), "user-remove", name)

    def set_password(self, name: str, password: str, actor: str | None = None) -> Account:
        """A new password; the user's browsers are signed out."""
        account = self.accounts.update_user(name, password=password)
        self.accounts.record(actor or local_actor(), "user-passwd", name)
        return account

    def set_role(self, name: str, role: Role, actor: str | None = None) -> Account:
        account = self.accounts.update_user(name, role=role)
        self.accounts.record(actor or local_actor(), "user-role", name, {"role": role})
        return account

    def add_token(self, user: str, label: str | None = None, actor: str | None = None) -> tuple[Token, str]:
        """An API token for scripts (``Authorization: Bearer SECRET``): the record and the secret,
        which is shown this once and stored only as a hash."""
        token, secret = self.accounts.add_token(user, label)
        self.accounts.record(actor or local_actor(), "token-add", user, {"token": token.id, "label": label})
        return token, secret

    def revoke_token(self, token_id: int, actor: str | None = None) -> Token:
        token = self.accounts.revoke_token(token_id)
        self.accounts.record(actor or local_actor(), "token-revoke", token.user, {"token": token.id})
        return token

    def tokens(self, user: str | None = None) -> list[Token]:
        return self.accounts.tokens(user)

    def audit(self, limit: int | None = None, target: str | None = None, user: str | None = None) -> list[AuditEntry]:
        """Who changed what and when (labels, concepts, accounts, sign-ins), newest first."""
        return list(self.accounts.audit(limit, target=target, user=user))


def _check_page(top: int, offset: int) -> None:
    if not isinstance(top, int) or top < 1 or top > 10_000:
        raise UsageError(f"top must be a whole number from 1 to 10000, not {top!r}")
    if not isinstance(offset, int) or offset < 0:
        raise UsageError(f"offset must be a whole number >= 0, not {offset!r}")


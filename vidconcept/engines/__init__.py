"""Ingest engines: where decoding, shot detection and the model run.

An engine takes :class:`~vidconcept.ingest.VideoJob` items and yields, per job, a
:class:`~vidconcept.ingest.VideoResult` (shots, keyframes written, scores and
features) or a failed :class:`~vidconcept.ingest.FileOutcome`. The
:class:`~vidconcept.ingest.Ingestor` stays the one writer of the index, so every
engine gets the same idempotence and crash safety. Engines are created by name::

    engine = create_engine("local", model=model, workers=2)
"""
from __future__ import annotations

from collections.abc import Callable

from ..errors import UsageError, unknown

ENGINES: dict[str, Callable] = {}


def register_engine(name: str):
    def register(factory: Callable) -> Callable:
        if name in ENGINES:
            raise ValueError(f"engine {name!r} is already registered")
        ENGINES[name] = factory
        return factory

    return register


def list_engines() -> list[str]:
    return sorted(ENGINES)


def create_engine(name: str | None, **kwargs):
    """Build engine ``name`` (default ``local``) with the ingest's options."""
    name = name or "local"
    if name not in ENGINES:
        raise UsageError(str(unknown("engine", name, ENGINES)))
    return ENGINES[name](**kwargs)


@register_engine("local")
def _local(**kwargs):
    from .local import LocalEngine

    return LocalEngine(**kwargs)


@register_engine("ray")
def _ray(**kwargs):
    try:
        from .ray import RayEngine
    except ImportError as exc:
        raise UsageError(
            f"--engine ray needs Ray: pip install 'vidconcept[ray]' ({exc})"
        ) from exc
    return RayEngine(**kwargs)

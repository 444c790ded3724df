"""Ingest engines: where decoding, shot detection and the model run.

An engine takes :class:`~vidconcept.engines.base.VideoJob` items and yields, per job, a
:class:`~vidconcept.engines.base.VideoResult` (shots, keyframes written, scores and
features) or a failed :class:`~vidconcept.engines.base.FileOutcome` (the contract,
:mod:`vidconcept.engines.base`). The :class:`~vidconcept.ingest.Ingestor` stays the one
writer of the index, so every engine gets the same idempotence and crash safety. Engines
are created by name, and :meth:`vidconcept.api.Index.ingest` hands the factory to the ingest::

    engine = create_engine("local", model=model, workers=2)
"""
from __future__ import annotations

from collections.abc import Callable

from ..errors import UnknownNameError, UsageError
from ..registry import Registry

ENGINES: Registry[Callable] = Registry("engine")
register_engine = ENGINES.register


def list_engines() -> list[str]:
    return ENGINES.names()


def create_engine(name: str | None, **kwargs):
    """Build engine ``name`` (default ``local``) with the ingest's options."""
    try:
        factory = ENGINES[name or "local"]
    except UnknownNameError as exc:
        raise UsageError(str(exc)) from None
    return factory(**kwargs)


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

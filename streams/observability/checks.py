"""Readiness checks a process hands to its :class:`~streams.observability.server.HealthServer`.

Each returns an async callable answering ``None`` when ready, else why not.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from streams.observability import metrics
from streams.observability.server import Check


def redis_reachable(client: Any) -> Check:
    """Redis answers PING."""

    async def check() -> str | None:
        return None if await client.ping() else "PING failed"

    return check


def partitions_assigned(assignment: Callable[[], Collection[Any]]) -> Check:
    """The consumer owns at least one partition (so it joined its group: Kafka is reachable)."""

    async def check() -> str | None:
        return None if assignment() else "no partition assigned (yet)"

    return check


def flag(ready: Callable[[], bool], why: str) -> Check:
    """``ready()`` is true (a model loaded, a lock held, ...); else ``why``."""

    async def check() -> str | None:
        return None if ready() else why

    return check


def consumer_assigned(name: str) -> Check:
    """The runner named ``name`` owned partitions at its last poll (metrics must be on)."""
    return partitions_assigned(lambda: metrics.assignment_of(name))

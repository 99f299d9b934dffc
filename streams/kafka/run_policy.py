"""What a consumer run (:mod:`streams.kafka.runner`) is told, and how long it waits.

:class:`RunnerConfig` says how a runner polls, orders, commits and restarts (with a
:class:`Backoff`); :data:`NOT_RESTARTED` are the errors no restart heals. :func:`finished_within`
and :func:`abandon_after` bound a wait on a Kafka client without waiting for the client to
honour its cancellation: aiokafka honours it only when its own request times out, which a
frozen broker delays by ~30 s (measured, docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from streams.errors import ConfigurationError

log = logging.getLogger(__name__)
#: Errors of a run that a restart cannot heal: they end :meth:`Runner.run` even with ``restart``.
NOT_RESTARTED: tuple[type[Exception], ...] = (
    ConfigurationError, AuthenticationFailedError, SaslAuthenticationFailed,
    TopicAuthorizationFailedError, GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError, TransactionalIdAuthorizationFailed)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``initial_s``, doubled per failure, at most ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 30.0


@dataclass(frozen=True)
class RunnerConfig:
    """How a runner polls, orders and commits (see the module docstring)."""

    name: str
    topics: tuple[str, ...] = ()  # subscribed as a group; empty: the strategy assigns
    batch_size: int = 500
    poll_timeout_s: float = 0.5
    commit: Literal["offsets", "transaction", "none"] = "offsets"
    group_id: str | None = None  # of the offsets sent to a transaction
    per_partition: bool = False
    pipeline_depth: int = 1
    empty_batches: bool = False  # call process on polls that returned nothing
    restart: Backoff | None = None
    drain_timeout_s: float = 30.0
    retry_backoff_s: float = 0.5  # after an aborted transaction
    stall_timeout_s: float | None = None  # completing or committing a batch; None: no limit
    close_timeout_s: float = 10.0  # each client's stop() when a run ends

    def __post_init__(self) -> None:
        if self.commit == "transaction" and not (self.per_partition and self.group_id):
            raise ValueError("transactions need per_partition=True and a group_id")
        if self.pipeline_depth < 1:
            raise ValueError("pipeline_depth must be >= 1")


async def finished_within(task: asyncio.Future[Any], limit: float) -> bool:
    """Whether ``task`` finished within ``limit`` seconds; if not it is cancelled and left
    behind, not waited for (``asyncio.wait_for`` would wait for aiokafka to honour the
    cancellation, which a frozen broker delays until aiokafka's own request timeout)."""
    try:
        done, _ = await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return True
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # its error: retrieved
    return False


async def abandon_after(stop: Coroutine[Any, Any, Any], limit: float) -> None:
    """Await a client's ``stop()`` for at most ``limit`` seconds, ignoring its errors."""
    task = asyncio.ensure_future(stop)
    if await finished_within(task, limit) and task.exception() is not None:
        log.debug("stopping a client failed: %r", task.exception())

"""The retention process's ``/metrics``, ``/healthz`` and ``/readyz`` (observability).

Served on ``CHURN_METRICS__RETENTION_PORT`` (9415). Ready when it holds the retention lock (it
loaded its checkpoint), its consumer owned the input partitions at its last poll, and Redis
answers PING. The scrape reads the service's counts (:mod:`streams.retention.tally`, kept in its
checkpoint) and the loop's (:func:`streams.observability.sources.retention_metrics`); the
consumer runner adds the usual consumer and producer series under ``consumer="retention"``.
"""

from __future__ import annotations

from typing import Any

from streams.observability import checks, sources
from streams.observability.server import HealthServer, serve
from streams.settings import Settings


async def serve_retention_health(settings: Settings, service: Any,
                                 client: Any) -> HealthServer | None:
    """Register the service's metrics and start its server (None: disabled or no port).
    ``service`` is a :class:`~streams.retention.service.RetentionService`, ``client`` its
    Redis."""
    sources.watch_retention(lambda: service)
    return await serve(settings, "retention", {
        "lock": checks.flag(lambda: bool(service.locked),
                            "retention lock not held (another process has it, or loading)"),
        "partitions": checks.consumer_assigned("retention"),
        "redis": checks.redis_reachable(client),
    })

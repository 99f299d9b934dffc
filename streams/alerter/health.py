"""The alerter's ``/metrics``, ``/healthz`` and ``/readyz`` (:mod:`streams.observability`).

Ready when its consumer owns partitions of the scores topic and Redis answers PING. The scrape
reads the processor's totals: alerts by severity, holdout alerts, scores read, replays.
"""

from __future__ import annotations

from typing import Any

from streams.observability import checks, sources
from streams.observability.server import HealthServer, serve
from streams.settings import Settings


async def serve_alerter_health(settings: Settings, alerter: Any,
                               client: Any) -> HealthServer | None:
    """Register the alerter's sources and start its server (None: disabled or no port).
    ``alerter`` is a :class:`~streams.alerter.service.Alerter`, ``client`` its Redis."""
    sources.watch_alerter(lambda: alerter.processor.totals)
    return await serve(settings, "alerter", {
        "partitions": checks.consumer_assigned("alerter"),
        "redis": checks.redis_reachable(client),
    })

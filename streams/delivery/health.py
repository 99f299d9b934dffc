"""``/metrics``, ``/healthz`` and ``/readyz`` of ``churnpulse dispatch`` and of the dashboard.

Dispatch is ready when its consumer owns partitions of the alerts topic and Redis answers
PING; its webhook metrics are fed by the dispatch loop (deliveries by outcome, retries) and
the transport (each POST's duration, by target name). The dashboard is ready once it has
caught up with its topics; the scrape reads its live sessions and open alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from streams.observability import checks, metrics, sources
from streams.observability.server import HealthServer, serve
from streams.settings import Settings


async def serve_dispatch_health(settings: Settings, client: Any) -> HealthServer | None:
    """Name the webhook targets for the metrics and start the server (None: disabled)."""
    metrics.webhook_targets({t.url: t.name for t in settings.webhook.targets})
    return await serve(settings, "dispatch", {
        "partitions": checks.consumer_assigned("dispatch"),
        "redis": checks.redis_reachable(client),
    })


async def serve_dashboard_health(settings: Settings, stats: Callable[[], Mapping[str, Any]],
                                 ) -> HealthServer | None:
    """``stats()`` is the dashboard's health dict (``caught_up``, ``clients``, ``board``)."""
    sources.watch_dashboard(stats)
    return await serve(settings, "dashboard", {
        "caught_up": checks.flag(lambda: bool(stats().get("caught_up")),
                                 "still reading the topics' recent history"),
    })


def dashboard_stats(app: Any) -> Callable[[], Mapping[str, Any]]:
    """The numbers of the dashboard's own ``/healthz``, read from the ``Dashboard`` whose
    ``healthz`` handler ``app`` routes (without a request)."""
    dash = next(route.handler.__self__ for route in app.router.routes()
                if route.resource is not None and route.resource.canonical == "/healthz")

    def stats() -> Mapping[str, Any]:
        return {"caught_up": dash.feed.caught_up.is_set(), "board": len(dash.board),
                "clients": len(dash.hub)}

    return stats

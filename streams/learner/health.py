"""The learner's ``/metrics``, ``/healthz`` and ``/readyz`` (:mod:`streams.observability`).

Ready once it holds the learner lock and loaded its state (``LearnerService.start``), while
Redis answers PING and its consumer (runner ``learner``) owns the labels partitions. The
scrape reads the last status the learner saved (labels, resolutions, pending snapshots,
delayed metrics of every model, drift alarms) and when it last published a model.
"""

from __future__ import annotations

from typing import Any

from streams.observability import checks, sources
from streams.observability.server import Check, HealthServer, serve
from streams.settings import Settings


async def serve_learner_health(settings: Settings, service: Any) -> HealthServer | None:
    """Register the learner's metric sources and start its server (None: disabled or no
    port). ``service`` is a :class:`~streams.learner.service.LearnerService`."""
    sources.watch_learner(status=lambda: getattr(service, "status", None),
                          published=lambda: getattr(service, "published_at", None))
    ready: dict[str, Check] = {
        "state": checks.flag(lambda: service.state is not None,
                             "learner lock or state not loaded yet"),
        "redis": checks.redis_reachable(service.client),
        "partitions": checks.consumer_assigned("learner"),  # the labels topic, assigned
    }
    return await serve(_with_port(settings), "learner", ready)


def _with_port(settings: Settings) -> Settings:
    """``model.learner_metrics_port`` (the earlier setting) wins when set."""
    legacy = settings.model.learner_metrics_port
    if not legacy:
        return settings
    return settings.model_copy(update={"metrics": settings.metrics.model_copy(
        update={"learner_port": legacy})})

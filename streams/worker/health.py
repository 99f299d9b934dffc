"""The worker's ``/metrics``, ``/healthz`` and ``/readyz`` (:mod:`streams.observability`).

Ready when the events consumer owns partitions (it joined its group, so Kafka answers), Redis
answers PING, and the batch processor is built with a model to score with (the learner's
latest version, or the untrained fallback before the first one). The scrape reads the
processor's totals, the sweeper's stats, the watermarks of the partitions owned and the model
served; the hot path only feeds the runner's metrics and the event→score histogram.
"""

from __future__ import annotations

import time
from typing import Any

from streams.observability import checks, sources
from streams.observability.server import HealthServer, serve
from streams.redis.client import make_redis
from streams.settings import Settings
from streams.worker.consumer import EventConsumer


def _marks(events: EventConsumer, now: float) -> dict[int, float]:
    processor = events.processor
    if processor is None or processor.watermarks is None:
        return {}
    wall = time.time()
    return {p: mark for p in events.assigned()
            if (mark := processor.watermarks.sweep_time(p, wall)) is not None}


def _model(events: EventConsumer) -> Any:
    processor = events.processor
    return None if processor is None else getattr(processor.models, "handle", None)


async def serve_worker_health(settings: Settings, events: EventConsumer) -> HealthServer | None:
    """Register the worker's metric sources and start its server (None: disabled or no port)."""
    sources.watch_worker(
        totals=lambda: None if events.processor is None else events.processor.totals,
        sweeper=lambda: None if events.sweeper is None else events.sweeper.stats,
        marks=lambda now: _marks(events, now),
        model=lambda: _model(events))
    ready = {
        "partitions": checks.partitions_assigned(events.runner.assignment),
        "redis": checks.redis_reachable(make_redis(settings.redis)),
        "model": checks.flag(lambda: _model(events) is not None, "no model loaded yet"),
    }
    return await serve(settings, "worker", ready)

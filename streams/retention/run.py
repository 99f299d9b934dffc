"""``churnpulse retention``: topics, Redis and signals around :mod:`streams.retention.service`."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from streams.kafka.topics import ensure_named_topics, ensure_topics
from streams.redis.client import make_redis
from streams.retention.health import serve_retention_health
from streams.retention.service import build_service, run_service
from streams.settings import Settings


def ensure_outcomes_topic(settings: Settings) -> None:
    """Create ``retention.outcomes_topic`` when it is missing."""
    ensure_named_topics(settings.kafka, [settings.retention.outcomes_topic])


async def _main(settings: Settings) -> None:
    client = make_redis(settings.redis)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # checkpoint and publish, then exit
    service = build_service(settings, client, stop)
    health = await serve_retention_health(settings, service, client)  # /metrics /readyz
    try:
        await run_service(settings, client, stop, service)
    finally:
        if health is not None:
            await health.stop()
        await client.aclose()


def run_retention(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    ensure_topics(settings.kafka, settings.topics)
    ensure_outcomes_topic(settings)
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(_main(settings))
    return 0

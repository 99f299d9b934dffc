"""``up`` / ``down`` / ``status`` of all local services, in a fixed order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from streams.services import kafka, kafka_cluster, prometheus, redis_cluster, redis_server
from streams.services.common import ServiceStatus, file_lock
from streams.settings import Settings

_Action = Callable[[Settings], ServiceStatus]
UP_ORDER: tuple[_Action, ...] = (redis_server.up, kafka.up)
DOWN_ORDER: tuple[_Action, ...] = (kafka.down, redis_server.down)
STATUS_ORDER: tuple[_Action, ...] = (kafka.status, redis_server.status)
# started only when named (`churnpulse services up prometheus`); `down` stops it when ours
OPTIONAL: dict[str, dict[str, _Action]] = {
    "prometheus": {"up": prometheus.up, "down": prometheus.down, "status": prometheus.status},
    "cluster": {"up": redis_cluster.up, "down": redis_cluster.down,
                "status": redis_cluster.status},
    "kafka3": {"up": kafka_cluster.up, "down": kafka_cluster.down,
               "status": kafka_cluster.status},
}


def _lock_file(settings: Settings) -> Path:
    return settings.services.state_dir.expanduser().resolve() / ".services.lock"


def up(settings: Settings) -> list[ServiceStatus]:
    """Start every service that is not already answering; reuse the ones that are.

    Raises :class:`~streams.services.common.ServiceError` on the first service that cannot
    be brought up (the ones already started stay up; ``down`` stops them).
    """
    with file_lock(_lock_file(settings)):
        by_name = {s.name: s for s in (action(settings) for action in UP_ORDER)}
    return [by_name["kafka"], by_name["redis"]]


def down(settings: Settings) -> list[ServiceStatus]:
    """Stop the services we started (recorded pid files only); leave others alone."""
    with file_lock(_lock_file(settings)):
        ours = [prometheus.down(settings)] if prometheus.paths(settings).pid.exists() else []
        three = kafka_cluster.cluster(settings)
        if any(three.node(i).pid.exists() for i in range(three.size)):
            ours.append(kafka_cluster.down(settings))
        return ours + [action(settings) for action in DOWN_ORDER]


def status(settings: Settings) -> list[ServiceStatus]:
    """What runs where, without changing anything."""
    return [action(settings) for action in STATUS_ORDER]


def optional(action: str, name: str, settings: Settings) -> ServiceStatus:
    """``action`` (up, down, status) of the optional service ``name`` (see OPTIONAL)."""
    with file_lock(_lock_file(settings)):
        return OPTIONAL[name][action](settings)

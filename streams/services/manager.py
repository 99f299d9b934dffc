"""``up`` / ``down`` / ``status`` / ``reset`` of all local services, in a fixed order."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from streams.services import kafka, kafka_cluster, prometheus, redis_cluster, redis_server
from streams.services.common import ServiceStatus, file_lock, port_open
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


def reset(settings: Settings) -> list[ServiceStatus]:
    """``down``, then delete the data of the brokers of this state dir: the single broker's
    and the three-broker cluster's topics, offsets and cluster ids. The next ``up`` formats
    them afresh (a local broker full of test topics starts slowly). Redis keeps nothing across
    a restart (no persistence), so ``down`` has emptied it. A broker that still answers after
    ``down`` (not started by us) keeps its data; the row says so."""
    rows = down(settings)
    with file_lock(_lock_file(settings)):
        single = kafka.paths(settings)
        external = any(r.name == kafka.NAME and r.state == "running-external" for r in rows)
        freed = 0 if external else _remove(single.data, single.cluster_id)
        three = kafka_cluster.cluster(settings)
        three_up = any(port_open("127.0.0.1", port) for port in three.ports)
        freed3 = 0 if three_up else _remove(*(three.node(i).data for i in range(three.size)),
                                            three.root / "kafka-cluster-id")
    out = []
    for r in rows:
        if r.name == kafka.NAME:
            r = replace(r, detail=f"{r.detail}; " + (
                "its data is not ours: left alone" if external else
                f"data removed ({freed / 2**20:.1f} MiB)"))
        elif r.name == kafka_cluster.NAME:
            r = replace(r, detail=f"{r.detail}; " + (
                "a node still answers: data left alone" if three_up else
                f"data removed ({freed3 / 2**20:.1f} MiB)"))
        out.append(r)
    if freed3 and not any(r.name == kafka_cluster.NAME for r in rows):
        out.append(ServiceStatus(kafka_cluster.NAME, three.bootstrap, "stopped", None, None,
                                 f"data removed ({freed3 / 2**20:.1f} MiB)"))
    return out


def _remove(*paths: Path) -> int:
    """Delete files and directory trees; the bytes they held."""
    freed = 0
    for path in paths:
        if path.is_dir():
            freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path)
        elif path.exists():
            freed += path.stat().st_size
            path.unlink()
    return freed


def status(settings: Settings) -> list[ServiceStatus]:
    """What runs where, without changing anything."""
    return [action(settings) for action in STATUS_ORDER]


def optional(action: str, name: str, settings: Settings) -> ServiceStatus:
    """``action`` (up, down, status) of the optional service ``name`` (see OPTIONAL)."""
    with file_lock(_lock_file(settings)):
        return OPTIONAL[name][action](settings)

"""Redis clients, built from the ``redis`` section of the settings: the one place that turns
URL, credentials and timeouts into a client, for every process, CLI command and local tool;
and the two helpers the stores share (:func:`call`: an unreachable Redis is a
:class:`~streams.errors.TransientError`; :func:`raise_fields`: hash fields that only go up).
A cluster client carries its replica barrier (:func:`durability`, ``CHURN_REDIS__WAIT_REPLICAS``;
:mod:`streams.redis.cluster` sends the ``WAIT``).

``url`` may be ``redis://`` or ``rediss://`` (TLS) and may carry ``user:password@``;
``username`` and ``password`` in the settings (``CHURN_REDIS__USERNAME``,
``CHURN_REDIS__PASSWORD``) are used when the URL carries none (redis-py lets the URL win), so
an ACL user's secret need not sit in a URL.

>>> from streams.settings import RedisSettings
>>> from pydantic import SecretStr
>>> cfg = RedisSettings(url="redis://10.0.0.5:6379/1", password=SecretStr("s3"),
...                     username="worker", socket_timeout_s=2.0)
>>> sorted(client_options(cfg).items())  # doctest: +NORMALIZE_WHITESPACE
[('password', 's3'), ('socket_connect_timeout', 2.0), ('socket_timeout', 2.0),
 ('username', 'worker')]
>>> client_options(RedisSettings(), timeout_s=0.5)
{'socket_timeout': 0.5, 'socket_connect_timeout': 0.5}
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ClusterDownError, NoPermissionError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.errors import ConfigurationError, TransientError
from streams.settings import RedisSettings

log = logging.getLogger(__name__)
HEALTH_CHECK_S = 30  # PING a connection that sat idle this long before using it


@dataclass(frozen=True, slots=True)
class Durability:
    """The replica barrier of a Redis Cluster client (:mod:`streams.settings_redis`): each
    write pipeline to a primary ends with ``WAIT replicas timeout_ms``; 0 replicas = none."""

    replicas: int
    timeout_ms: int


_DURABILITY: weakref.WeakKeyDictionary[Any, Durability] = weakref.WeakKeyDictionary()
DEFAULT_DURABILITY = Durability(RedisSettings().wait_replicas, RedisSettings().wait_timeout_ms)


def durability(client: Any) -> Durability:
    """The barrier of a client: for a cluster client as :func:`make_redis` set it from the
    settings (the settings' default, one replica, for one built elsewhere); none (0) for a
    standalone Redis."""
    if not isinstance(client, (aioredis.RedisCluster, redis.RedisCluster)):
        return Durability(0, DEFAULT_DURABILITY.timeout_ms)
    return _DURABILITY.get(client, DEFAULT_DURABILITY)


def set_durability(client: Any, value: Durability) -> None:
    """Give ``client`` (a cluster client) its barrier (benchmarks compare with and without)."""
    _DURABILITY[client] = value
RAISE_FIELDS = ("for i = 1, #ARGV, 2 do local c = redis.call('HGET', KEYS[1], ARGV[i]) "
                "if not c or tonumber(c) < tonumber(ARGV[i + 1]) then "
                "redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end end return 1")


def client_options(cfg: RedisSettings, *, timeout_s: float | None = None) -> dict[str, Any]:
    """Keyword arguments of ``Redis.from_url`` (redis-py, sync or asyncio) for ``cfg``.

    ``timeout_s`` replaces ``cfg.socket_timeout_s`` (probes want a short one).
    """
    timeout = cfg.socket_timeout_s if timeout_s is None else timeout_s
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if cfg.username is not None:
        options["username"] = cfg.username
    if cfg.password is not None:
        options["password"] = cfg.password.get_secret_value()
    return options


def cluster_url(cfg: RedisSettings) -> str | None:
    """The seed URL of a Redis Cluster (``redis://host:port``), None for a standalone Redis.

    ``cluster=true`` or a ``redis+cluster://`` (``rediss+cluster://``) URL selects the
    cluster; a cluster has only database 0, so the URL's path is dropped.

    >>> cluster_url(RedisSettings(url="redis+cluster://10.0.0.5:7000/0"))
    'redis://10.0.0.5:7000'
    >>> cluster_url(RedisSettings(url="rediss://a:7000", cluster=True))
    'rediss://a:7000'
    >>> cluster_url(RedisSettings()) is None
    True
    """
    scheme, sep, rest = cfg.url.partition("://")
    if not sep or not (cfg.cluster or scheme.endswith("+cluster")):
        return None
    return f"{scheme.removesuffix('+cluster')}://{rest.split('/', 1)[0]}"


def make_redis(cfg: RedisSettings) -> aioredis.Redis:
    """An asyncio client (every process and async command); close it with ``aclose()``.

    A :class:`redis.asyncio.RedisCluster` when the settings name a cluster
    (:func:`cluster_url`): it follows MOVED/ASK and failovers; the stores split their
    multi-customer calls by hash slot (:mod:`streams.redis.cluster`), whose write pipelines
    wait for ``cfg.wait_replicas`` replicas (:func:`durability`). It is typed as ``Redis``
    because the stores use only the commands both have.
    """
    seed = cluster_url(cfg)
    if seed is not None:
        client = aioredis.RedisCluster.from_url(
            seed, health_check_interval=HEALTH_CHECK_S, **client_options(cfg))
        set_durability(client, Durability(cfg.wait_replicas, cfg.wait_timeout_ms))
        return cast(aioredis.Redis, client)
    return aioredis.Redis.from_url(cfg.url, health_check_interval=HEALTH_CHECK_S,
                                   **client_options(cfg))


def make_sync_redis(cfg: RedisSettings, *, timeout_s: float | None = None) -> redis.Redis:
    """A blocking client (local service probes, the demo's summary); ``close()`` it."""
    seed = cluster_url(cfg)
    if seed is not None:
        return cast(redis.Redis, redis.RedisCluster.from_url(
            seed, **client_options(cfg, timeout_s=timeout_s)))
    return redis.Redis.from_url(cfg.url, **client_options(cfg, timeout_s=timeout_s))


async def call(awaitable: Awaitable[Any]) -> Any:
    """Await a Redis command; connection loss and timeouts become :class:`TransientError`.

    Refused credentials and ACL denials become :class:`ConfigurationError`: retrying cannot
    help, and treating them as a bad batch would dead-letter good records.
    """
    try:
        return await awaitable
    except (AuthenticationError, NoPermissionError) as exc:  # before ConnectionError: a subclass
        raise ConfigurationError(f"redis refused this process: {exc}") from exc
    except (RedisConnectionError, RedisTimeoutError, ClusterDownError, TryAgainError) as exc:
        raise TransientError(f"redis unavailable: {exc}") from exc


async def raise_fields(client: aioredis.Redis, key: str, values: Mapping[str, float]) -> None:
    """Set each hash field of ``key`` to its value unless it holds a larger one (one script)."""
    if not values:
        return
    args: list[str] = []
    for name, value in values.items():
        args += [name, repr(float(value))]
    await call(client.eval(RAISE_FIELDS, 1, key, *args))


def primaries_short_of_replicas(nodes: Mapping[str, Mapping[str, Any]], wanted: int
                                ) -> tuple[list[str], int]:
    """(addresses of the slot-serving primaries with fewer than ``wanted`` healthy replicas,
    how many primaries serve slots), from redis-py's ``cluster_nodes()`` map.

    >>> nodes = {"a:1": {"node_id": "A", "flags": "master", "master_id": "-", "slots": [[0, 9]]},
    ...          "b:1": {"node_id": "B", "flags": "myself,master", "master_id": "-",
    ...                  "slots": [[10, 16383]]},
    ...          "c:1": {"node_id": "C", "flags": "slave", "master_id": "A", "slots": []}}
    >>> primaries_short_of_replicas(nodes, 1)
    (['b:1'], 2)
    """
    primaries = {n["node_id"]: addr for addr, n in nodes.items()
                 if "master" in str(n.get("flags", "")) and n.get("slots")
                 and "fail" not in str(n.get("flags", ""))}
    replicas: dict[str, int] = {}
    for n in nodes.values():
        flags = str(n.get("flags", ""))
        if "slave" in flags and "fail" not in flags:
            replicas[str(n.get("master_id"))] = replicas.get(str(n.get("master_id")), 0) + 1
    short = sorted(addr for node_id, addr in primaries.items()
                   if replicas.get(node_id, 0) < wanted)
    return short, len(primaries)


def check_cluster_replicas(cfg: RedisSettings) -> None:
    """At a process's start: a Redis Cluster none of whose primaries has the replicas the
    barrier waits for (``CHURN_REDIS__WAIT_REPLICAS``) would hold every batch forever, so it
    is a :class:`ConfigurationError` naming the setting; some primaries short (a failover
    not yet healed) is a warning (their batches wait). Unreachable Redis: left to the
    process's own retries."""
    seed = cluster_url(cfg)
    if seed is None or cfg.wait_replicas == 0:
        return
    try:
        client = redis.RedisCluster.from_url(seed, **client_options(cfg, timeout_s=5.0))
        try:
            nodes = cast(Mapping[str, Mapping[str, Any]], client.cluster_nodes())
        finally:
            client.close()
    except redis.RedisError as exc:
        log.warning("could not read the Redis Cluster's nodes to check replicas: %s", exc)
        return
    short, primaries = primaries_short_of_replicas(nodes, cfg.wait_replicas)
    if primaries and len(short) == primaries:
        raise ConfigurationError(
            f"every Redis Cluster primary ({', '.join(short)}) has fewer than "
            f"{cfg.wait_replicas} replica(s): the replica barrier would hold every batch. "
            f"Attach replicas, or set CHURN_REDIS__WAIT_REPLICAS=0 for a cluster without "
            f"them (docs/scaling.md, 'Durability on Redis Cluster')")
    if short:
        log.warning("Redis Cluster primaries %s have fewer than %d replica(s): their batches "
                    "wait until one is attached (CHURN_REDIS__WAIT_REPLICAS)",
                    ", ".join(short), cfg.wait_replicas)

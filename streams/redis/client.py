"""Redis clients, built from the ``redis`` section of the settings: the one place that turns
URL, credentials and timeouts into a client, for every process, CLI command and local tool;
and the two helpers the stores share (:func:`call`: an unreachable Redis is a
:class:`~streams.errors.TransientError`; :func:`raise_fields`: hash fields that only go up).

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

from collections.abc import Awaitable, Mapping
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ClusterDownError, NoPermissionError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.errors import ConfigurationError, TransientError
from streams.settings import RedisSettings

HEALTH_CHECK_S = 30  # PING a connection that sat idle this long before using it
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
    multi-customer calls by hash slot (:mod:`streams.redis.cluster`). It is typed as
    ``Redis`` because the stores use only the commands both have.
    """
    seed = cluster_url(cfg)
    if seed is not None:
        return cast(aioredis.Redis, aioredis.RedisCluster.from_url(
            seed, health_check_interval=HEALTH_CHECK_S, **client_options(cfg)))
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

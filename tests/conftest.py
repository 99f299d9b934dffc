"""Shared fixtures: the real services, located by environment, never silently skipped in CI.

Integration tests use ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` when set (``.ci/run`` and
``make test`` start the project's local services and set them). Otherwise they try
testcontainers, when a Docker engine answers. Otherwise they fail under CI (``CI`` set) and skip
on a developer machine with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis


def _unavailable(what: str) -> None:
    msg = (f"{what} is not available: set {what.upper().replace(' ', '_')} "
           "(run `churnpulse services up`, see README) or run a Docker engine")
    if os.environ.get("CI"):
        pytest.fail(msg + " — CI requires the real services", pytrace=False)
    pytest.skip(msg)


def _docker_ok() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    if _docker_ok():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7.2-alpine") as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        return
    _unavailable("redis url")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if servers:
        yield servers
        return
    if _docker_ok():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    _unavailable("kafka bootstrap servers")


@pytest.fixture
def key_prefix() -> str:
    """A fresh Redis key prefix per test, so tests never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def aredis(redis_url: str, key_prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    sync = redis.Redis.from_url(redis_url)
    for key in sync.scan_iter(match=f"{key_prefix}:*", count=1000):
        sync.delete(key)
    sync.close()
    await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A Redis Cluster: ``REDIS_CLUSTER_URL`` when set, else the local one on ports 7001-7006
    (``churnpulse services up cluster``). Started here when it is not running, and then
    stopped at the end of the session, as ``make test`` stops the Kafka and Redis it started;
    a cluster that was already running stays up."""
    url = os.environ.get("REDIS_CLUSTER_URL")
    if url:
        yield url
        return
    from streams.services import redis_cluster
    from streams.services.common import ServiceError
    from streams.settings import load_settings

    settings = load_settings()
    try:
        started = redis_cluster.up(settings).state == "started"  # else it was already running
    except ServiceError as exc:
        _unavailable(f"redis cluster url ({exc.message})")
    yield redis_cluster.URL
    if started:
        redis_cluster.down(settings)


@pytest.fixture
async def acluster(redis_cluster_url: str, key_prefix: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio Redis Cluster client (the project's factory); the test's keys are removed."""
    from streams.redis.client import make_redis
    from streams.settings import RedisSettings

    client = make_redis(RedisSettings(url=redis_cluster_url))
    yield client
    keys = [k async for k in client.scan_iter(match=f"{key_prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(params=["standalone", "cluster"])
def any_redis(request: pytest.FixtureRequest) -> aioredis.Redis:
    """The same test on one Redis and on a Redis Cluster."""
    name = "aredis" if request.param == "standalone" else "acluster"
    client: aioredis.Redis = request.getfixturevalue(name)
    return client


def _uses_local_cluster(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    if names & {"redis_cluster_url", "acluster"}:
        return True
    callspec = getattr(item, "callspec", None)  # any_redis["cluster"], pipeline["cluster"]
    return callspec is not None and "cluster" in [str(v) for v in callspec.params.values()]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n N --dist loadgroup`` (``make test``) every test of the local Redis
    Cluster runs in one worker, one after another: one of them stops and wipes the cluster,
    and the worker that starts it (the session fixture above) stops it at its end."""
    for item in items:
        if _uses_local_cluster(item):
            item.add_marker(pytest.mark.xdist_group("redis-cluster"))

"""The replica barrier's settings (``CHURN_REDIS__WAIT_REPLICAS``, ``..._WAIT_TIMEOUT_MS``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.redis.client import Durability, durability, make_redis
from streams.settings import RedisSettings, load_settings


def test_defaults_wait_for_one_replica_on_a_cluster() -> None:
    redis = load_settings().redis
    assert (redis.wait_replicas, redis.wait_timeout_ms) == (1, 2000)


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURN_REDIS__WAIT_REPLICAS", "0")
    monkeypatch.setenv("CHURN_REDIS__WAIT_TIMEOUT_MS", "250")
    redis = load_settings().redis
    assert (redis.wait_replicas, redis.wait_timeout_ms) == (0, 250)


@pytest.mark.parametrize("field", [{"wait_replicas": -1}, {"wait_timeout_ms": 0}])
def test_out_of_range_is_refused(field: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        RedisSettings(**field)  # type: ignore[arg-type]


async def test_a_cluster_client_carries_its_barrier_and_a_standalone_none() -> None:
    cluster = make_redis(RedisSettings(url="redis+cluster://127.0.0.1:1", wait_replicas=2,
                                       wait_timeout_ms=300))  # no connection is made here
    standalone = make_redis(RedisSettings(url="redis://127.0.0.1:1/0", wait_replicas=2))
    assert durability(cluster) == Durability(2, 300)
    assert durability(standalone).replicas == 0
    await standalone.aclose()

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from streams.redis.observation_store import RedisObservationStore
from tests.observation_store_contract import POLICY, ObservationStoreContract, obs

pytestmark = pytest.mark.integration


class TestRedisObservationStore(ObservationStoreContract):
    @pytest.fixture
    def store(self, any_redis: aioredis.Redis, key_prefix: str) -> RedisObservationStore:
        """Standalone Redis and Redis Cluster (plain commands instead of the script there)."""
        return RedisObservationStore(any_redis, key_prefix, POLICY)


async def test_snapshots_expire_after_horizon_and_margin(aredis: aioredis.Redis,
                                                         key_prefix: str) -> None:
    store = RedisObservationStore(aredis, key_prefix, POLICY)
    await store.record([obs("a", 1.0)])
    ttl = await aredis.ttl(store.key("a"))
    assert POLICY.horizon_s < ttl <= POLICY.horizon_s + 7 * 86400

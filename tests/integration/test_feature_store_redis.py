from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from streams.feature_store import FeatureStore, RedisFeatureStore
from streams.settings import FeatureSettings
from tests.feature_store_contract import FeatureStoreContract, ev

pytestmark = pytest.mark.integration


class TestRedisFeatureStore(FeatureStoreContract):
    @pytest.fixture
    def make_store(self, aredis: aioredis.Redis,
                   key_prefix: str) -> Callable[..., Awaitable[FeatureStore]]:
        async def make(**overrides: Any) -> FeatureStore:
            return RedisFeatureStore(aredis, FeatureSettings(**overrides), key_prefix)

        return make


async def test_keys_of_a_customer_share_one_hash_tag(aredis: aioredis.Redis,
                                                     key_prefix: str) -> None:
    store = RedisFeatureStore(aredis, FeatureSettings(), key_prefix)
    await store.apply([ev(1, cid="alice")])
    keys = sorted(k.decode() for k in await aredis.keys(f"{key_prefix}:*"))
    assert keys == [f"{key_prefix}:{{c:alice}}:f"]


async def test_script_is_reloaded_after_script_flush(aredis: aioredis.Redis,
                                                     key_prefix: str) -> None:
    store = RedisFeatureStore(aredis, FeatureSettings(), key_prefix)
    await store.apply([ev(1)])
    await aredis.script_flush()
    result = await store.apply([ev(2, ts=ev(1).ts + 1)])
    assert result["c1"].state["n"] == 2.0

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from streams.redis.feature_store import FeatureStore, RedisFeatureStore
from streams.settings import FeatureSettings
from tests.feature_store_contract import FeatureStoreContract, ev

pytestmark = pytest.mark.integration


class TestRedisFeatureStore(FeatureStoreContract):
    @pytest.fixture
    def make_store(self, any_redis: aioredis.Redis,
                   key_prefix: str) -> Callable[..., Awaitable[FeatureStore]]:
        """Standalone Redis and Redis Cluster (the batch split by slot there)."""
        async def make(**overrides: Any) -> FeatureStore:
            return RedisFeatureStore(any_redis, FeatureSettings(**overrides), key_prefix)

        return make


async def test_keys_of_a_customer_share_one_hash_tag(aredis: aioredis.Redis,
                                                     key_prefix: str) -> None:
    store = RedisFeatureStore(aredis, FeatureSettings(), key_prefix)
    await store.apply([ev(1, cid="alice")], {"alice": (3, ev(1).ts + 86400)})
    keys = sorted(k.decode() for k in await aredis.keys(f"{key_prefix}:*"))
    assert keys == [f"{key_prefix}:due:{{p3}}", f"{key_prefix}:{{c:alice}}:f"]
    assert await aredis.hget(f"{key_prefix}:{{c:alice}}:f", "n") == b"1"


async def test_retention_ttl_is_set_on_every_write(aredis: aioredis.Redis,
                                                   key_prefix: str) -> None:
    store = RedisFeatureStore(aredis, FeatureSettings(retention_days=2), key_prefix)
    await store.apply([ev(1)])
    ttl = await aredis.pttl(store.feature_key("c1"))
    assert 2 * 86400_000 - 60_000 < ttl <= 2 * 86400_000
    forever = RedisFeatureStore(aredis, FeatureSettings(retention_days=0), key_prefix)
    await forever.apply([ev(2, cid="c2")])
    assert await aredis.pttl(forever.feature_key("c2")) == -1


async def test_stored_state_is_exact(aredis: aioredis.Redis, key_prefix: str) -> None:
    """The script's reply is rounded (cjson, 14 digits); what is stored is not."""
    from online_models.features import replay

    store = RedisFeatureStore(aredis, FeatureSettings(dedup_ids=64), key_prefix)
    events = [ev(i, kind="purchase", ts=ev(0).ts + i * 1234.567, value=1 / 3 + i)
              for i in range(50)]
    await store.apply(events)
    assert await store.get("c1") == replay([(e.event_type, e.ts, e.value) for e in events])


def test_cli_prints_features_as_table_and_json(redis_url: str, key_prefix: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import json

    from streams.cli.main import main

    async def seed() -> None:
        client = aioredis.Redis.from_url(redis_url)
        store = RedisFeatureStore(client, FeatureSettings(), key_prefix)
        await store.apply([ev(1, cid="alice", kind="session"),
                           ev(2, cid="alice", kind="purchase", ts=ev(1).ts + 60, value=9.5)])
        await client.aclose()

    asyncio.run(seed())
    env = {"CHURN_REDIS__URL": redis_url, "CHURN_REDIS__KEY_PREFIX": key_prefix}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert main(["features", "alice", "--at", "2026-01-08T00:00:00Z"]) == 0
        table = capsys.readouterr().out
        assert main(["features", "alice", "--json", "--at", "2026-01-08T00:00:00Z"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert main(["features", "nobody"]) == 1
    assert "customer alice at 2026-01-08T00:00:00.000+00:00" in table
    assert "purchase" in table and "session" in table
    assert data["features"]["events_total"] == 2
    assert data["features"]["days_since_last"] == pytest.approx(7 - 60 / 86400)
    assert data["features"]["value_total.purchase"] == 9.5


async def test_script_is_reloaded_after_script_flush(aredis: aioredis.Redis,
                                                     key_prefix: str) -> None:
    store = RedisFeatureStore(aredis, FeatureSettings(), key_prefix)
    await store.apply([ev(1)])
    await aredis.script_flush()
    result = await store.apply([ev(2, ts=ev(1).ts + 1)])
    assert result["c1"].state["n"] == 2.0


async def test_a_customer_with_unreadable_state_is_refused_alone(aredis: aioredis.Redis,
                                                                key_prefix: str) -> None:
    """Issue 12: infinity in a stored state made cjson fail the whole call, every batch after."""
    from streams.redis.feature_store import rejected_positions

    store = RedisFeatureStore(aredis, FeatureSettings(), key_prefix)
    poisoned, garbage = store.feature_key("inf"), store.feature_key("junk")
    await aredis.eval("redis.call('HSET', KEYS[1], 's', cmsgpack.pack({n = 1, r = 0, "
                      "['n.login'] = 1, ['s1.login'] = 1 / 0})); "
                      "redis.call('HSET', KEYS[2], 's', 'not a state')", 2, poisoned, garbage)
    blobs = [await aredis.hget(k, "s") for k in (poisoned, garbage)]
    batch = [ev(1, cid="inf", kind="session"), ev(2, cid="ok"), ev(3, cid="junk"),
             ev(4, cid="inf", kind="login", value=1.0)]
    result = await store.apply(batch)
    assert rejected_positions(batch, result) == {0: "bad_state", 2: "bad_state", 3: "bad_state"}
    assert result["ok"].applied == 1
    assert (await store.get("ok"))["n"] == 1.0
    assert [await aredis.hget(k, "s") for k in (poisoned, garbage)] == blobs  # untouched

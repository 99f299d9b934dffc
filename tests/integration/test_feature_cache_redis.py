"""The worker's write-behind feature cache (streams.redis.feature_cache) on a real Redis:
the store contract, and Redis holding exactly what the plain Lua store would have written."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from online_models.features import FeatureSpec
from streams.redis.feature_cache import CachedFeatureStore, decode_stored
from streams.redis.feature_store import FeatureStore, RedisFeatureStore, rejected_positions
from streams.settings import FeatureSettings
from tests.feature_store_contract import FeatureStoreContract, ev, random_stream, reference

pytestmark = pytest.mark.integration


def cached(client: aioredis.Redis, prefix: str, **overrides: Any) -> CachedFeatureStore:
    settings = FeatureSettings(**overrides)
    return CachedFeatureStore(RedisFeatureStore(client, settings, prefix), client, settings)


class TestCachedFeatureStore(FeatureStoreContract):
    @pytest.fixture
    def make_store(self, any_redis: aioredis.Redis,
                   key_prefix: str) -> Callable[..., Awaitable[FeatureStore]]:
        """Standalone Redis (cached) and Redis Cluster (the cache steps aside there)."""
        async def make(**overrides: Any) -> FeatureStore:
            return cached(any_redis, key_prefix, **overrides)

        return make


async def stored(client: aioredis.Redis, key: str) -> tuple[dict[str, float], bytes, bytes]:
    blob, n = await client.hmget(key, "s", "n")
    state, ring = decode_stored(blob)
    return state, ring, n


async def test_redis_holds_what_the_lua_store_writes(aredis: aioredis.Redis,
                                                     key_prefix: str) -> None:
    """Same batches (duplicates, late events, a full ring, new types) through both stores:
    the stored states are equal to the last bit, rings and counts byte for byte, and so are
    the states handed back for scoring."""
    plain = RedisFeatureStore(aredis, FeatureSettings(dedup_ids=8, max_event_types=3),
                              key_prefix + "p")
    cache = cached(aredis, key_prefix + "c", dedup_ids=8, max_event_types=3)
    events = random_stream(7, 600, customers=6, types=5)
    events += events[100:180]  # redelivered: duplicates and, past the ring, late events
    for start in range(0, len(events), 41):
        batch = events[start:start + 41]
        want, got = await plain.apply(batch), await cache.apply(batch)
        assert {c: (a.applied, a.late, a.rejected) for c, a in got.items()} == \
               {c: (a.applied, a.late, a.rejected) for c, a in want.items()}
        for cid, result in got.items():  # the Lua reply is rounded to 14 digits
            assert result.state == pytest.approx(want[cid].state, rel=1e-13)
    for cid in {e.customer_id for e in events}:
        assert await stored(aredis, cache.inner.feature_key(cid)) == \
               await stored(aredis, plain.feature_key(cid))
    assert cache.conflicts == 0 and len(cache) == 6


async def test_lua_store_continues_from_a_cached_write(aredis: aioredis.Redis,
                                                       key_prefix: str) -> None:
    """The Lua script reads the state the cache wrote (MessagePack written by Python)."""
    events = random_stream(3, 300, customers=4)
    cache = cached(aredis, key_prefix, dedup_ids=1000)
    plain = RedisFeatureStore(aredis, FeatureSettings(dedup_ids=1000), key_prefix)
    await cache.apply(events[:150])
    again = await plain.apply(events[:200])  # 150 duplicates, 50 new
    assert sum(a.applied for a in again.values()) == 50
    expected = reference(events[:200], max_types=32)
    for cid, state in expected.items():
        assert await plain.get(cid) == pytest.approx(state, rel=1e-12)


async def test_a_stale_cache_writes_nothing_and_the_script_applies(aredis: aioredis.Redis,
                                                                   key_prefix: str) -> None:
    """Two workers on one customer (a rebalance seen late): the stale one's write-back is
    refused, its events go through the script, nothing is lost or counted twice."""
    a, b = cached(aredis, key_prefix), cached(aredis, key_prefix)
    events = [ev(i, ts=ev(0).ts + i * 60.0) for i in range(6)]
    await a.apply(events[:2])
    await b.apply(events[1:4])  # b loads a's state: one duplicate, two new
    result = await a.apply(events[3:6])  # a's cache says n=2, Redis says 4
    assert a.conflicts == 1
    assert result["c1"].applied == 2 and result["c1"].state["n"] == 6.0
    assert (await a.get("c1"))["n"] == 6.0
    after = await a.apply([ev(9, ts=ev(0).ts + 900.0)])  # reloaded, cached again
    assert after["c1"].state["n"] == 7.0 and a.conflicts == 1


async def test_erased_customer_is_not_resurrected(aredis: aioredis.Redis,
                                                  key_prefix: str) -> None:
    store, other = cached(aredis, key_prefix), cached(aredis, key_prefix)
    await store.apply([ev(1), ev(2, ts=ev(1).ts + 1)])
    await other.forget("c1")  # another process erases the customer
    result = await store.apply([ev(3, ts=ev(1).ts + 2)])
    assert result["c1"].state["n"] == 1.0 and store.conflicts == 1
    assert (await store.get("c1"))["n"] == 1.0


async def test_invalidate_reloads_from_redis(aredis: aioredis.Redis, key_prefix: str) -> None:
    store = cached(aredis, key_prefix)
    plain = RedisFeatureStore(aredis, FeatureSettings(), key_prefix)
    await store.apply([ev(1)])
    await plain.apply([ev(2, ts=ev(1).ts + 5)])
    store.invalidate()
    result = await store.apply([ev(3, ts=ev(1).ts + 9), ev(2, ts=ev(1).ts + 5)])
    assert result["c1"].applied == 1 and result["c1"].state["n"] == 3.0
    assert store.conflicts == 0


async def test_write_back_sets_retention_and_the_due_index(aredis: aioredis.Redis,
                                                           key_prefix: str) -> None:
    store = cached(aredis, key_prefix, retention_days=2)
    await store.apply([ev(1)], {"c1": (3, ev(1).ts + 86400)})
    ttl = await aredis.pttl(store.inner.feature_key("c1"))
    assert 2 * 86400_000 - 60_000 < ttl <= 2 * 86400_000
    assert await aredis.hget(store.inner.feature_key("c1"), "n") == b"1"
    assert await aredis.zscore(store.inner.due_key(3), "c1") == ev(1).ts + 86400


async def test_unreadable_states_are_refused_alone(aredis: aioredis.Redis,
                                                   key_prefix: str) -> None:
    store = cached(aredis, key_prefix)
    poisoned, garbage = store.inner.feature_key("inf"), store.inner.feature_key("junk")
    await aredis.eval("redis.call('HSET', KEYS[1], 's', cmsgpack.pack({n = 1, r = 0, "
                      "['n.login'] = 1, ['s1.login'] = 1 / 0})); "
                      "redis.call('HSET', KEYS[2], 's', 'not a state')", 2, poisoned, garbage)
    batch = [ev(1, cid="inf", kind="session"), ev(2, cid="ok"), ev(3, cid="junk")]
    result = await store.apply(batch)
    assert rejected_positions(batch, result) == {0: "bad_state", 2: "bad_state"}
    assert result["ok"].applied == 1 and len(store) == 1


async def test_exact_state_reaches_scoring(aredis: aioredis.Redis, key_prefix: str) -> None:
    """Unlike the script's reply (14 digits), the cached state is the exact double."""
    from online_models.features import replay

    store = cached(aredis, key_prefix, dedup_ids=64)
    events = [ev(i, kind="purchase", ts=ev(0).ts + i * 1234.567, value=1 / 3 + i)
              for i in range(50)]
    result = await store.apply(events)
    expected = replay([(e.event_type, e.ts, e.value) for e in events], FeatureSpec())
    assert result["c1"].state == expected
    assert await store.get("c1") == expected


async def test_scripts_are_reloaded_after_script_flush(aredis: aioredis.Redis,
                                                       key_prefix: str) -> None:
    store = cached(aredis, key_prefix)
    await store.apply([ev(1)])
    await aredis.script_flush()
    store.invalidate()  # the next call loads (one script) and writes back (the other)
    result = await store.apply([ev(2, ts=ev(1).ts + 1)], {"c1": (0, ev(1).ts + 9)})
    assert result["c1"].state["n"] == 2.0 and (await store.get("c1"))["n"] == 2.0

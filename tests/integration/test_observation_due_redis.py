"""The due index holds one member per customer (issue 13, memory): what it holds, how it moves
on record/remove, and an older store's per-snapshot members still served (standalone and
cluster)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from streams.redis.churned import RedisChurnedCustomers
from streams.redis.observation_store import (
    RedisObservationStore,
    ScoredSnapshot,
    due_member,
    member,
)
from tests.observation_store_contract import DAY, POLICY, obs

pytestmark = pytest.mark.integration


async def index(client: aioredis.Redis, prefix: str) -> dict[str, float]:
    pairs: list[tuple[bytes, float]] = await client.zrange(  # type: ignore[assignment]
        f"{prefix}:obs:due", 0, -1, withscores=True)
    return {m.decode(): s for m, s in pairs}


async def test_one_member_per_customer_scored_by_its_earliest_snapshot(
        any_redis: aioredis.Redis, key_prefix: str) -> None:
    store = RedisObservationStore(any_redis, key_prefix, POLICY)
    assert await store.record([obs("a", 3 * DAY), obs("a", DAY), obs("a", 2 * DAY),
                               obs("b|7", 5 * DAY)]) == 4
    assert await index(any_redis, key_prefix) == {"a": POLICY.horizon_s + DAY,
                                                  "b|7|": POLICY.horizon_s + 5 * DAY}
    assert await store.count() == 4
    due = await store.due(until=32 * DAY, limit=10)
    assert [(o.customer_id, o.t) for o in due] == [("a", DAY), ("a", 2 * DAY)]
    await store.remove(due)  # re-scored to a's next snapshot
    assert await index(any_redis, key_prefix) == {"a": POLICY.horizon_s + 3 * DAY,
                                                  "b|7|": POLICY.horizon_s + 5 * DAY}
    assert await store.count() == 2
    rest = await store.due(until=100 * DAY, limit=10)
    assert [(o.customer_id, o.t) for o in rest] == [("a", 3 * DAY), ("b|7", 5 * DAY)]
    await store.remove(rest)
    assert await index(any_redis, key_prefix) == {}
    assert await store.count() == 0


async def test_the_worker_script_adds_with_lt(aredis: aioredis.Redis, key_prefix: str) -> None:
    store = RedisObservationStore(aredis, key_prefix, POLICY)
    churned = RedisChurnedCustomers(aredis, key_prefix)
    out = await store.record_scored([ScoredSnapshot("a", 4 * DAY, obs("a", 4 * DAY)),
                                     ScoredSnapshot("x|", DAY, obs("x|", DAY))], churned)
    assert out.recorded == 2
    out = await store.record_scored([ScoredSnapshot("a", 2 * DAY, obs("a", 2 * DAY))], churned)
    out2 = await store.record_scored([ScoredSnapshot("a", 6 * DAY, obs("a", 6 * DAY))], churned)
    assert (out.recorded, out2.recorded) == (1, 1)
    assert await index(aredis, key_prefix) == {"a": POLICY.horizon_s + 2 * DAY,
                                               "x||": POLICY.horizon_s + DAY}
    assert await store.count() == 4
    assert store._scripts.loaded("observe")  # through observe.lua, not plain commands
    assert [o.t for o in await store.due(until=POLICY.horizon_s + 4 * DAY, limit=10)] == [
        DAY, 2 * DAY, 4 * DAY]


async def test_due_limit_keeps_the_global_order_across_customers(
        any_redis: aioredis.Redis, key_prefix: str) -> None:
    store = RedisObservationStore(any_redis, key_prefix, POLICY)
    await store.record([obs("a", DAY), obs("a", 4 * DAY), obs("b", 2 * DAY), obs("c", 3 * DAY)])
    due = await store.due(until=100 * DAY, limit=2)
    assert [(o.customer_id, o.t) for o in due] == [("a", DAY), ("b", 2 * DAY)]


async def test_an_older_stores_per_snapshot_members_are_served_and_cleared(
        any_redis: aioredis.Redis, key_prefix: str) -> None:
    store = RedisObservationStore(any_redis, key_prefix, POLICY)
    # exactly what the store of the older layout wrote: hash + one member per snapshot, no count
    old = [obs("a", DAY), obs("a", 2 * DAY), obs("b", 3 * DAY)]
    assert await store.record(old) == 3
    await any_redis.delete(f"{key_prefix}:obs:due", f"{key_prefix}:obs:due:n")
    await any_redis.zadd(f"{key_prefix}:obs:due", {member(o, POLICY): POLICY.due(o) for o in old})
    legacy = RedisObservationStore(any_redis, key_prefix, POLICY)  # a fresh process
    assert await legacy.count() == 3  # the count starts from the older index
    await legacy.record([obs("a", 5 * DAY)])  # a new snapshot of a: a's member is added
    assert await legacy.count() == 4
    due = await legacy.due(until=33 * DAY, limit=10)  # read through both shapes, once each
    assert [(o.customer_id, o.t) for o in due] == [("a", DAY), ("a", 2 * DAY), ("b", 3 * DAY)]
    await legacy.remove(due)
    assert await index(any_redis, key_prefix) == {"a": POLICY.horizon_s + 5 * DAY}
    assert await legacy.count() == 1
    assert [o.t for o in await legacy.due(until=100 * DAY, limit=10)] == [5 * DAY]


async def test_a_snapshot_added_while_its_customer_empties_keeps_an_entry(
        any_redis: aioredis.Redis, key_prefix: str) -> None:
    store = RedisObservationStore(any_redis, key_prefix, POLICY)
    await store.record([obs("a", DAY)])
    [first] = await store.due(until=100 * DAY, limit=10)
    await store.remove([first])
    assert await index(any_redis, key_prefix) == {}
    # the worker wrote a's hash after remove read it, before its index write: the re-check
    # (what remove does after its ZREM) puts the entry back
    writer = RedisObservationStore(any_redis, key_prefix, POLICY)
    await writer.record([obs("a", 2 * DAY)])
    await any_redis.zrem(f"{key_prefix}:obs:due", due_member("a"))
    await store._rescore({"a"})
    assert await index(any_redis, key_prefix) == {"a": POLICY.horizon_s + 2 * DAY}


async def test_a_member_whose_hash_expired_is_dropped(any_redis: aioredis.Redis,
                                                      key_prefix: str) -> None:
    store = RedisObservationStore(any_redis, key_prefix, POLICY)
    await store.record([obs("a", DAY), obs("b", 2 * DAY)])
    await any_redis.delete(store.key("a"))  # expired
    assert [o.customer_id for o in await store.due(until=100 * DAY, limit=10)] == ["b"]
    assert list(await index(any_redis, key_prefix)) == ["b"]

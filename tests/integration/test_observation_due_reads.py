"""The due read in each of its shapes — a few slots, a range of many (due.lua's HKEYS
filter), the whole hash — finds the same snapshots as the in-memory store (standalone and
cluster), and on one Redis through due.lua."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from streams.redis.observation_due import read_slots
from streams.redis.observation_store import InMemoryObservationStore, RedisObservationStore
from tests.observation_store_contract import DAY, POLICY, obs

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("jump_days", [2, 20, 90])  # < 8 slots, HKEYS range, whole hash
async def test_due_reads_find_what_the_in_memory_store_finds(
        any_redis: aioredis.Redis, key_prefix: str, jump_days: int) -> None:
    store = RedisObservationStore(any_redis, key_prefix, POLICY)
    memory = InMemoryObservationStore(POLICY)
    snapshots = [obs(f"c{i}", (i % 5 + 3 * d) * DAY + 3600.0 * i) for i in range(12)
                 for d in range(8)]
    assert await store.record(snapshots) == len(snapshots)
    await memory.record(snapshots)
    until = POLICY.horizon_s
    while True:
        until += jump_days * DAY
        got = await store.due(until, limit=40)
        want = await memory.due(until, limit=40)
        assert [(o.customer_id, o.t) for o in got] == [(o.customer_id, o.t) for o in want]
        if not want:
            break
        await store.remove(got)
        await memory.remove(want)
    assert await store.count() == 0


async def test_due_lua_reads_ranges_whole_hashes_and_single_fields(
        aredis: aioredis.Redis, key_prefix: str) -> None:
    store = RedisObservationStore(aredis, key_prefix, POLICY)
    await store.record([obs("a", d * DAY) for d in (1, 2, 5, 30, 31)])
    slot = {d: str(POLICY.slot(d * DAY)) for d in (1, 2, 5, 30, 31)}
    reads = [("a", "a", (slot[1], slot[2])), ("a", "a", (slot[2], slot[30])),
             ("a", "a", ("*", "*")), ("a", "a", ("=", slot[5])), ("a", "a", ("=", "nope")),
             ("b", "b", ("*", "*"))]
    got = await read_slots(aredis, store._scripts, "due", store.key, reads)
    assert [[f for f, _ in pairs] for pairs in got] == [
        [slot[1], slot[2]], [slot[2], slot[5], slot[30]],
        sorted(slot.values(), key=int), [slot[5]], [], []]
    assert store._scripts.loaded("due")
    assert all(isinstance(v, bytes) and v for pairs in got for _, v in pairs)


async def test_pending_stubs_are_the_pending_snapshots_without_features(
        any_redis: aioredis.Redis, key_prefix: str) -> None:
    store = RedisObservationStore(any_redis, key_prefix, POLICY)
    await store.record([obs(c, d * DAY) for c in ("a", "b") for d in (3, 1, 2)])
    whole = await store.pending_many(["a", "b", "none"])
    stubs = await store.pending_stubs(["a", "b", "none"])
    assert set(stubs) == {"a", "b", "none"} and stubs["none"] == []
    for cid in ("a", "b"):
        assert [o.t for o in stubs[cid]] == [DAY, 2 * DAY, 3 * DAY]
        assert all(o.x == {} for o in stubs[cid])
        assert [(o.customer_id, o.t, o.score, o.model_version) for o in stubs[cid]] == [
            (o.customer_id, o.t, o.score, o.model_version) for o in whole[cid]]
        assert all(o.x for o in whole[cid])

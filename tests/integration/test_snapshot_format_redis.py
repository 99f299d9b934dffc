"""Packed snapshots on the real Redis: size measured with MEMORY USAGE, the older format still
loads, the schema travels between processes through Redis, and what cannot decode is dropped
(counted), never raised."""

from __future__ import annotations

import zlib

import orjson
import pytest
import redis.asyncio as aioredis

from online_models.observations import Observation
from streams.redis.observation_store import RedisObservationStore
from streams.redis.packed_state import feature_schema, quantized, schema_text
from tests.observation_store_contract import DAY, POLICY
from tests.unit.test_snapshot_format import T0, realistic

pytestmark = pytest.mark.integration


async def test_a_pending_snapshot_takes_under_200_bytes_with_its_due_index_share(
        aredis: aioredis.Redis, key_prefix: str) -> None:
    store = RedisObservationStore(aredis, key_prefix, POLICY)
    customers, days = 20, 30
    vectors = [realistic(s) for s in range(40)]
    batch = [Observation(f"c{i:05d}", T0 + d * DAY + 12.5, vectors[(i * 7 + d) % 40],
                         0.1 + i / 100, f"{1000 + d}-logreg")
             for i in range(customers) for d in range(days)]
    assert await store.record(batch) == customers * days
    assert sum(len(o.x) for o in batch) / len(batch) > 40  # realistic: 32-44 features
    used = [int(await aredis.memory_usage(store.key(f"c{i:05d}"), samples=0) or 0)
            for i in range(customers)]
    index = int(await aredis.memory_usage(f"{key_prefix}:obs:due", samples=0) or 0)
    assert await aredis.zcard(f"{key_prefix}:obs:due") == customers  # one entry per customer
    per_snapshot = (sum(used) + index) / (customers * days)
    # 941 + 104 bytes as zlib'd JSON, 173 + 104 with one index entry per snapshot
    assert per_snapshot <= 200, per_snapshot
    # and the learner, with none of the worker's caches, reads every one back
    learner_side = RedisObservationStore(aredis, key_prefix, POLICY)
    due = await learner_side.due(until=T0 + 100 * DAY, limit=10_000)
    assert sorted(due, key=lambda o: (o.customer_id, o.t)) == [quantized(o) for o in batch]
    assert learner_side.schemas.undecodable == 0


async def test_a_snapshot_stored_in_the_older_format_still_loads(aredis: aioredis.Redis,
                                                                 key_prefix: str) -> None:
    store = RedisObservationStore(aredis, key_prefix, POLICY)
    old = Observation("old", 3 * DAY + 0.5, {"log_n": 0.123456789, "tenure_days": 12.3}, 0.4,
                      "7-logreg")
    # exactly what the store wrote before packed snapshots: zlib'd JSON + due entry
    await aredis.hset(store.key("old"), str(POLICY.slot(old.t)),
                      zlib.compress(orjson.dumps(old.to_json()), 1))
    await aredis.zadd(f"{key_prefix}:obs:due", {f"old|{POLICY.slot(old.t)}": POLICY.due(old)})
    new = Observation("old", 4 * DAY, {"log_n": 0.5}, 0.6, "8-logreg")
    assert await store.record([new, old]) == 1  # the old one's slot is taken
    assert await store.pending("old") == [old, quantized(new)]  # the old one exact
    assert await store.due(until=100 * DAY, limit=10) == [old, quantized(new)]


async def test_a_snapshot_whose_schema_is_lost_is_dropped_and_counted(aredis: aioredis.Redis,
                                                                       key_prefix: str) -> None:
    worker = RedisObservationStore(aredis, key_prefix, POLICY)
    await worker.record([Observation("a", DAY, {"f": 1.0}, 0.5, "v"),
                         Observation("b", DAY, {"g": 2.0}, 0.5, "v")])
    await aredis.hdel(worker.schemas.key, feature_schema(["f"]).hex())
    learner = RedisObservationStore(aredis, key_prefix, POLICY)
    assert [o.customer_id for o in await learner.due(until=100 * DAY, limit=10)] == ["b"]
    assert learner.schemas.undecodable == 1
    assert await learner.count() == 1 and await aredis.hlen(worker.key("a")) == 0
    assert await learner.due(until=100 * DAY, limit=10) == await learner.pending("b")


async def test_the_writer_puts_a_lost_schema_back_within_a_minute(aredis: aioredis.Redis,
                                                                  key_prefix: str) -> None:
    now = [0.0]
    worker = RedisObservationStore(aredis, key_prefix, POLICY)
    worker.schemas._clock = lambda: now[0]
    await worker.record([Observation("a", DAY, {"f": 1.0}, 0.5, "v")])
    await aredis.delete(worker.schemas.key)  # e.g. lost by an operator
    now[0] = 59.0
    await worker.record([Observation("a", 2 * DAY, {"f": 1.0}, 0.5, "v")])
    assert not await aredis.exists(worker.schemas.key)  # cached: no write per batch
    now[0] = 61.0
    await worker.record([Observation("a", 3 * DAY, {"f": 1.0}, 0.5, "v")])
    learner = RedisObservationStore(aredis, key_prefix, POLICY)
    assert [o.t for o in await learner.pending("a")] == [DAY, 2 * DAY, 3 * DAY]


async def test_a_schema_id_clash_stores_that_snapshot_as_json(aredis: aioredis.Redis,
                                                             key_prefix: str) -> None:
    store = RedisObservationStore(aredis, key_prefix, POLICY)
    sid = feature_schema(["f", "g"])
    await aredis.hset(store.schemas.key, sid.hex(), schema_text(["someone", "else"]))
    obs = Observation("a", DAY, {"f": 0.1, "g": 2.0}, 0.5, "v")
    await store.record([obs])
    raw = await aredis.hget(store.key("a"), str(POLICY.slot(obs.t)))
    assert raw is not None and raw[:1] not in (b"\xc1", b"\xc2")
    assert await store.pending("a") == [obs]  # exact

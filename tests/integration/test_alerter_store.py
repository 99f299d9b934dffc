"""The alerter's Redis store: records round-trip, writes are all-or-nothing compare-and-set."""

from __future__ import annotations

import redis.asyncio as aioredis

from alerts.batch import Stored
from alerts.policy import RiskState
from alerts.segments import SegmentModel
from streams.redis.alert_store import RedisAlertStore


async def test_round_trip_churn_marks_and_compare_and_set(any_redis: aioredis.Redis,
                                                          key_prefix: str) -> None:
    aredis = any_redis  # standalone Redis and Redis Cluster
    store = RedisAlertStore(aredis, key_prefix, ttl_s=3600.0)
    records, churned = await store.read(["a", "b"])
    assert records == {"a": (Stored(), 0), "b": (Stored(), 0)} and churned == {}
    a = Stored(RiskState(last_ts=5.0, recent_ids=("s1",)), 3, {3: [("alert", {"x": 1.5})]})
    assert await store.write({"a": (a, 0), "b": (Stored(applied=1), 0)}) == []
    await aredis.hset(f"{key_prefix}:churned", "b", repr(12.5))
    records, churned = await store.read(["a", "b"])
    assert records["a"] == (a, 1) and records["b"][1] == 1
    assert churned == {"b": 12.5}
    assert 0 < await aredis.pttl(store.key("a")) <= 3_600_000
    # a stale version anywhere: nothing is written, the moved customers are named
    assert await store.write({"a": (Stored(applied=9), 1), "b": (Stored(applied=9), 0)}) == ["b"]
    assert (await store.read(["a"]))[0]["a"] == (a, 1)
    assert await store.write({"a": (Stored(applied=10), 1)}) == []
    assert (await store.read(["a"]))[0]["a"] == (Stored(applied=10), 2)


async def test_segments_persist(any_redis: aioredis.Redis, key_prefix: str) -> None:
    store = RedisAlertStore(any_redis, key_prefix)
    assert await store.load_segments() is None
    model, _ = SegmentModel.initial().learn((0.9, 0.9, 0.0, 0.5, 0.7))
    await store.save_segments(model)
    assert await store.load_segments() == model

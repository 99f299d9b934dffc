"""The alerter's Redis store: records round-trip, writes are all-or-nothing compare-and-set."""

from __future__ import annotations

import redis.asyncio as aioredis

from alerts.batch import Stored
from alerts.policy import RiskState
from alerts.segments import SegmentModel
from online_models.features import catalogue
from streams.contracts import CustomerEvent
from streams.redis.alert_store import RedisAlertStore, RedisFeatureReader
from streams.redis.feature_store import RedisFeatureStore
from streams.settings import FeatureSettings


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


async def test_feature_reader_reads_what_the_worker_wrote(any_redis: aioredis.Redis,
                                                          key_prefix: str) -> None:
    """The alerter's batch read of feature states (one Lua call; a pipeline on a cluster)
    gives each customer's catalogue as the feature store computes it; absent = empty."""
    features = RedisFeatureStore(any_redis, FeatureSettings(), key_prefix)
    t0 = 1_767_225_600.0
    events = [CustomerEvent(f"e-{c}-{i}", f"c-{c}", kind, t0 + 3600.0 * i, 10.0)
              for c in range(5) for i, kind in enumerate(("session", "purchase", "session")[:c])]
    await features.apply(events)
    reader = RedisFeatureReader(features, any_redis)
    customers = [f"c-{c}" for c in range(6)]  # c-0 and c-5 have no state
    at = {c: t0 + 86400.0 for c in customers}
    got = await reader.features_many(customers, at)
    assert set(got) == set(customers)
    for c in customers:
        assert got[c] == await features.features(c, at[c])
    assert got["c-4"]["tenure_days"] > 0 and got["c-0"] == catalogue({}, at["c-0"],
                                                                     features.spec)

"""The worker's observation step on the real Redis (one script) and in memory: same outcomes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from online_models.observations import Observation
from streams.redis.churned import ChurnedCustomers, InMemoryChurnedCustomers, RedisChurnedCustomers
from streams.redis.observation_store import (
    InMemoryObservationStore,
    ObservationStore,
    RedisObservationStore,
    ScoredSnapshot,
)
from streams.redis.watermark_board import RedisWatermarkBoard
from tests.observation_store_contract import DAY, POLICY

pytestmark = pytest.mark.integration
Stores = tuple[ObservationStore, ChurnedCustomers]


@pytest.fixture(params=["memory", "redis"])
def stores(request: pytest.FixtureRequest, aredis: aioredis.Redis, key_prefix: str) -> Stores:
    if request.param == "memory":
        return InMemoryObservationStore(POLICY), InMemoryChurnedCustomers()
    return (RedisObservationStore(aredis, key_prefix, POLICY),
            RedisChurnedCustomers(aredis, key_prefix))


def snap(cid: str, t: float, newest: float | None = None, *, x: float = 1.0) -> ScoredSnapshot:
    return ScoredSnapshot(cid, t if newest is None else newest,
                          Observation(cid, t, {"f": x}, 0.25, "v7"))


async def test_records_one_per_slot_and_skips_churned(stores: Stores) -> None:
    store, churned = stores
    await churned.mark("b", 5 * DAY)
    await churned.mark("b", 4 * DAY)  # an earlier churn does not move the mark back
    outcome = await store.record_scored(
        [snap("a", DAY + 1), snap("b", 3 * DAY), snap("c", DAY)], churned)
    assert (outcome.churned, outcome.recorded, outcome.returned) == ({"b"}, 2, 0)
    again = await store.record_scored([snap("a", DAY + 50, x=9.0),
                                       ScoredSnapshot("c", DAY + 60, None)], churned)
    assert (again.churned, again.recorded) == (set(), 0)
    assert [o.x for o in await store.pending("a")] == [{"f": 1.0}]
    assert await store.pending("b") == []
    assert await churned.churned_since(["a", "b"]) == {"b": 5 * DAY}
    due = await store.due(until=100 * DAY, limit=10)
    assert [(o.customer_id, o.t) for o in due] == [("c", DAY), ("a", DAY + 1)]


async def test_an_event_after_the_churn_means_the_customer_returned(stores: Stores) -> None:
    store, churned = stores
    await churned.mark("b", 5 * DAY)
    outcome = await store.record_scored([snap("b", 6 * DAY)], churned)
    assert (outcome.churned, outcome.recorded, outcome.returned) == (set(), 1, 1)
    assert await churned.churned_since(["b"]) == {}
    # a sweep score after the churn of a customer whose newest event is before it: skipped
    await churned.mark("b", 8 * DAY)
    late = await store.record_scored([snap("b", 9 * DAY, newest=7 * DAY)], churned)
    assert late.churned == {"b"}


async def test_redis_does_it_in_one_script_call(aredis: aioredis.Redis, key_prefix: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = RedisObservationStore(aredis, key_prefix, POLICY)
    churned = RedisChurnedCustomers(aredis, key_prefix)
    calls: list[str] = []
    original: Callable[..., Any] = aredis.execute_command

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(args[0]))
        return await original(*args, **kwargs)

    await store.record_scored([snap("warm", 1.0)], churned)  # loads the script once
    monkeypatch.setattr(aredis, "execute_command", counting)
    await store.record_scored([snap(f"c{i}", DAY * 2) for i in range(200)], churned)
    assert calls == ["EVALSHA"]


async def test_watermarks_only_move_forward(aredis: aioredis.Redis, key_prefix: str) -> None:
    board = RedisWatermarkBoard(aredis, key_prefix)
    assert await board.slowest() is None
    await board.publish({0: 100.0, 1: 50.0})
    await board.publish({0: 90.0, 1: 70.0})
    assert await board.slowest() == 70.0
    assert await aredis.hget(board.key, "0") == b"100.0"

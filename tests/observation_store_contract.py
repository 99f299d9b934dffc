"""The contract of ObservationStore, run against the in-memory and the Redis store."""

from __future__ import annotations

from online_models.observations import LabelPolicy, Observation
from streams.redis.observation_store import ObservationStore
from streams.redis.packed_state import quantized

DAY = 86400.0
POLICY = LabelPolicy(horizon_s=30 * DAY, interval_s=DAY)


def obs(cid: str, t: float, score: float = 0.3) -> Observation:
    return Observation(cid, t, {"log_n": 1.5, "days_since_last": 0.25}, score, "v1")


class ObservationStoreContract:
    async def test_one_snapshot_per_customer_per_interval(self, store: ObservationStore) -> None:
        first = await store.record([obs("a", 10.0), obs("a", 20.0, 0.9), obs("b", 10.0)])
        again = await store.record([obs("a", 30.0), obs("a", DAY + 1)])
        assert (first, again) == (2, 1)
        pending = await store.pending("a")
        assert [o.t for o in pending] == [10.0, DAY + 1]
        assert pending[0].score == 0.3  # the first snapshot of the interval is kept
        assert pending[0].x == {"log_n": 1.5, "days_since_last": 0.25}

    async def test_due_returns_what_resolves_by_then_in_order(self,
                                                              store: ObservationStore) -> None:
        await store.record([obs("a", 5 * DAY), obs("b", DAY), obs("c", 40 * DAY)])
        due = await store.due(until=36 * DAY, limit=10)
        assert [(o.customer_id, o.t) for o in due] == [("b", DAY), ("a", 5 * DAY)]
        assert [o.customer_id for o in await store.due(until=36 * DAY, limit=1)] == ["b"]

    async def test_remove_is_idempotent(self, store: ObservationStore) -> None:
        await store.record([obs("a", 1.0), obs("a", DAY + 1)])
        first = (await store.pending("a"))[0]
        await store.remove([first])
        await store.remove([first])
        assert [o.t for o in await store.pending("a")] == [DAY + 1]
        assert await store.count() == 1
        assert await store.due(until=100 * DAY, limit=10) == await store.pending("a")

    async def test_features_read_back_as_packed_and_the_rest_exactly(
            self, store: ObservationStore) -> None:
        scored = Observation("a", 7 * DAY + 0.001, {"tenure_days": 1234.567, "trend": 0.1,
                                                    "days_since_last": 70000.25}, 0.123456789,
                             "42-logreg")
        await store.record([scored])
        [back] = await store.pending("a")
        assert back == quantized(scored)  # the same numbers in memory (backtest) and Redis
        assert (back.t, back.score, back.model_version) == (scored.t, 0.123456789, "42-logreg")
        assert back.x["tenure_days"] == 1234.5670166015625  # one value beyond half: float32

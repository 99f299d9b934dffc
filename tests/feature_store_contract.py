"""One behaviour, two backends: the contract every FeatureStore must keep."""

from __future__ import annotations

import math
import random

from online_models.features import OTHER_TYPE, FeatureSpec, apply_event, catalogue
from streams.contracts import CustomerEvent
from streams.redis.feature_store import FeatureStore, rejected_positions

DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01
YEAR_9000 = 221_845_392_000.0  # 9000-01-01


def ev(i: int, cid: str = "c1", kind: str = "login", ts: float = T0,
       value: float | None = None) -> CustomerEvent:
    return CustomerEvent(f"e{i}", cid, kind, ts, value)


def random_stream(seed: int, n: int, customers: int = 5, types: int = 4) -> list[CustomerEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = f"t{rng.randrange(types)}"
        value = round(rng.uniform(-50, 500), 2) if kind == "t0" else None
        out.append(ev(i, f"c{rng.randrange(customers)}", kind,
                      T0 + rng.uniform(0, 3 * DAY), value))
    return out


def reference(events: list[CustomerEvent], max_types: int) -> dict[str, dict[str, float]]:
    states: dict[str, dict[str, float]] = {}
    for e in events:
        states[e.customer_id] = apply_event(states.get(e.customer_id, {}), e.event_type, e.ts,
                                            e.value, FeatureSpec(max_types=max_types))
    return states


def close(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-9 * max(1.0, abs(a[k])) for k in a)


class FeatureStoreContract:
    """Mixed into a test class that provides an async ``store(**feature_settings)`` fixture."""

    async def test_counts_match_reference_math(self, make_store) -> None:  # type: ignore[no-untyped-def]
        store: FeatureStore = await make_store(dedup_ids=1000)  # no event is late
        events = random_stream(1, 400)
        for start in range(0, len(events), 37):
            await store.apply(events[start:start + 37])
        expected = reference(events, max_types=32)
        for cid, state in expected.items():
            assert close(await store.get(cid), state), cid

    async def test_duplicate_event_counts_once(self, make_store) -> None:  # type: ignore[no-untyped-def]
        store: FeatureStore = await make_store()
        first = await store.apply([ev(1), ev(2, ts=T0 + 1)])
        again = await store.apply([ev(2, ts=T0 + 1), ev(1), ev(3, ts=T0 + 2)])
        assert first["c1"].applied == 2
        assert again["c1"].applied == 1
        assert (await store.get("c1"))["n"] == 3.0

    async def test_duplicate_inside_one_batch_counts_once(self, make_store) -> None:  # type: ignore[no-untyped-def]
        store: FeatureStore = await make_store()
        result = await store.apply([ev(1), ev(1), ev(1)])
        assert result["c1"].applied == 1
        assert result["c1"].state["n"] == 1.0

    async def test_replaying_a_prefix_changes_nothing(self, make_store) -> None:  # type: ignore[no-untyped-def]
        store: FeatureStore = await make_store()
        events = random_stream(2, 300)
        await store.apply(events)
        before = {e.customer_id: await store.get(e.customer_id) for e in events}
        await store.apply(events[:150])
        after = {cid: await store.get(cid) for cid in before}
        assert after == before

    async def test_type_vocabulary_is_bounded(self, make_store) -> None:  # type: ignore[no-untyped-def]
        store: FeatureStore = await make_store(max_event_types=2)
        result = await store.apply([ev(i, kind=f"k{i}", ts=T0 + i) for i in range(5)])
        state = result["c1"].state
        assert state["k"] == 2.0
        assert state[f"n.{OTHER_TYPE}"] == 3.0
        assert state["n"] == 5.0

    async def test_dedup_memory_is_bounded_and_late_events_are_counted(self, make_store) -> None:  # type: ignore[no-untyped-def]
        store: FeatureStore = await make_store(dedup_ids=3)
        await store.apply([ev(i, ts=T0 + i) for i in range(5)])  # e0, e1 leave the ring
        late = await store.apply([ev(0, ts=T0), ev(99, ts=T0 + 0.5)])
        assert late["c1"].applied == 0
        assert late["c1"].late == 2
        state = await store.get("c1")
        assert state["n"] == 5.0
        assert state["dfloor"] == (T0 + 1) * 1000

    async def test_events_after_the_floor_still_apply_once(self, make_store) -> None:  # type: ignore[no-untyped-def]
        store: FeatureStore = await make_store(dedup_ids=2)
        await store.apply([ev(i, ts=T0 + i) for i in range(4)])
        result = await store.apply([ev(3, ts=T0 + 3), ev(10, ts=T0 + 2.5), ev(10, ts=T0 + 2.5)])
        assert (result["c1"].applied, result["c1"].late) == (1, 0)
        assert result["c1"].state["n"] == 5.0

    async def test_the_state_names_the_event_it_ends_with(self, make_store) -> None:  # type: ignore[no-untyped-def]
        # the worker names a score after AppliedState.last: a redelivered batch whose customer
        # the batches after it advanced too must not name that newer state after its own event
        store: FeatureStore = await make_store(dedup_ids=3)
        first = await store.apply([ev(1, "a", ts=T0), ev(2, "b", ts=T0 + 1),
                                   ev(3, "a", ts=T0 + 2)])
        assert (first["a"].last, first["b"].last) == (ev(3, "a", ts=T0 + 2), ev(2, "b", ts=T0 + 1))
        older = await store.apply([ev(1, "a", ts=T0), ev(2, "b", ts=T0 + 1)])
        assert (older["a"].applied, older["a"].last) == (0, None)  # a's state ends with e3
        assert (older["b"].applied, older["b"].last) == (0, ev(2, "b", ts=T0 + 1))
        again = await store.apply([ev(1, "a", ts=T0), ev(3, "a", ts=T0 + 2)])
        assert again["a"].last == ev(3, "a", ts=T0 + 2)
        mixed = await store.apply([ev(4, "a", ts=T0 + 3), ev(1, "a", ts=T0)])
        assert (mixed["a"].applied, mixed["a"].last) == (1, ev(4, "a", ts=T0 + 3))
        await store.apply([ev(5, "a", ts=T0 + 4), ev(6, "a", ts=T0 + 5)])  # e1, e3 leave the ring
        late = await store.apply([ev(1, "a", ts=T0)])
        assert (late["a"].late, late["a"].last) == (1, None)
        refused = await store.apply([ev(7, "a", ts=T0 + 6), ev(8, "a", ts=math.nan)])
        assert (refused["a"].applied, refused["a"].last) == (1, ev(7, "a", ts=T0 + 6))

    async def test_state_does_not_depend_on_batching(self, make_store) -> None:  # type: ignore[no-untyped-def]
        events = random_stream(3, 300, customers=3)
        one, many = await make_store(dedup_ids=4), await make_store(dedup_ids=4)
        await one.apply(events)
        for e in events:
            await many.apply([e])
        for cid in {e.customer_id for e in events}:
            assert close(await one.get(cid), await many.get(cid))

    async def test_features_are_exact_at_any_instant_without_touching_the_customer(
            self, make_store) -> None:  # type: ignore[no-untyped-def]
        store: FeatureStore = await make_store()
        events = [ev(i, kind="session", ts=T0 + i * 3600.0) for i in range(10)]
        await store.apply(events)
        spec = FeatureSpec()
        expected = reference(events, max_types=32)["c1"]
        for later in (0.0, 0.5 * DAY, 7 * DAY, 45 * DAY):
            now = T0 + 9 * 3600.0 + later
            got = await store.features("c1", now)
            want = catalogue(expected, now, spec)
            assert close(got, want), later
        assert (await store.features("nobody", T0)) == {}

    async def test_due_index_keeps_the_latest_time_and_sweeps_move_it_on(
            self, make_store) -> None:  # type: ignore[no-untyped-def]
        store = await make_store()
        await store.apply([ev(1, ts=T0 + 50)], {"c1": (2, T0 + 50 + DAY)})
        await store.apply([ev(2, ts=T0 + 10)], {"c1": (2, T0 + 10 + DAY)})  # late event
        await store.apply([ev(3, cid="c2", ts=T0)], {"c2": (2, T0 + DAY)})
        due = await store.due(2, T0 + DAY + 50, 10)
        assert [(d.customer_id, d.due) for d in due] == [("c2", T0 + DAY), ("c1", T0 + 50 + DAY)]
        assert due[1].state["n"] == 2.0
        assert await store.due(2, T0 + DAY + 49, 1) == due[:1]
        assert await store.due(1, T0 + 100 * DAY, 10) == []
        await store.reschedule(2, [("c2", T0 + 2 * DAY), ("c1", T0)])  # GT: c1 keeps its time
        await store.reschedule(2, [("ghost", T0)])  # XX: no entry created
        due = await store.due(2, T0 + 3 * DAY, 10)
        assert [(d.customer_id, d.due) for d in due] == [("c1", T0 + 50 + DAY),
                                                         ("c2", T0 + 2 * DAY)]

    async def test_forget_erases_state_and_due_entries(self, make_store) -> None:  # type: ignore[no-untyped-def]
        store = await make_store()
        await store.apply([ev(1), ev(2, cid="c2")], {"c1": (0, T0 + DAY), "c2": (0, T0 + DAY)})
        assert await store.forget("c1") >= 2
        assert await store.get("c1") == {}
        assert [d.customer_id for d in await store.due(0, T0 + 2 * DAY, 10)] == ["c2"]
        assert await store.forget("c1") == 0
        again = await store.apply([ev(1)])  # a replayed event after erasure starts afresh
        assert again["c1"].state["n"] == 1.0

    async def test_random_streams_match_the_reference_features(self, make_store) -> None:  # type: ignore[no-untyped-def]
        spec = FeatureSpec(max_types=3)
        store: FeatureStore = await make_store(dedup_ids=4096, max_event_types=3)
        rng = random.Random(11)
        events = [ev(i, f"c{rng.randrange(6)}", f"t{rng.randrange(5)}",
                     T0 + rng.uniform(0, 80 * DAY),
                     round(rng.uniform(-20, 300), 2) if rng.random() < 0.3 else None)
                  for i in range(1500)]
        for start in range(0, len(events), 211):
            await store.apply(events[start:start + 211])
        expected = reference(events, max_types=3)
        now = max(e.ts for e in events) + 3 * DAY
        for cid, state in expected.items():
            got = await store.features(cid, now)
            want = catalogue(state, now, spec)
            assert got.keys() == want.keys()
            for k in want:
                assert abs(got[k] - want[k]) <= 1e-9 * max(1.0, abs(want[k])), (cid, k)

    async def test_poison_events_are_refused_and_the_rest_of_the_batch_applies(
            self, make_store) -> None:  # type: ignore[no-untyped-def]
        """Issue 12: one bad event used to fail the whole Lua call (and its batch)."""
        store: FeatureStore = await make_store()
        good = [ev(1, ts=T0, value=2.0), ev(5, cid="c2", ts=T0 + 5), ev(9, ts=T0 + 9)]
        poison = {
            1: (ev(2, ts=YEAR_9000), "bad_timestamp"),  # past the ring's 6-byte time
            2: (ev(3, ts=math.nan), "bad_timestamp"),
            3: (ev(4, ts=math.inf, cid="c3"), "bad_timestamp"),
            5: (ev(6, value=math.inf), "bad_value"),
            6: (ev(7, value=math.nan, cid="c2"), "bad_value"),
            7: (ev(8, ts=-1e300), "bad_timestamp"),
        }
        batch = list(good)
        for pos in sorted(poison):
            batch.insert(pos, poison[pos][0])
        result = await store.apply(batch)
        assert rejected_positions(batch, result) == {pos: code for pos, (_, code) in
                                                     poison.items()}
        assert (result["c1"].applied, result["c2"].applied, result["c3"].applied) == (2, 1, 0)
        expected = reference(good, max_types=32)
        assert close(await store.get("c1"), expected["c1"])
        assert close(await store.get("c2"), expected["c2"])
        assert await store.get("c3") == {}  # nothing written for a customer with no good event
        again = await store.apply([e for e, _ in poison.values()] + good)
        assert sum(s.applied for s in again.values()) == 0  # good ones stay exactly-once

    async def test_an_event_that_would_overflow_the_state_is_refused_alone(
            self, make_store) -> None:  # type: ignore[no-untyped-def]
        """Issue 12: value 1e308 left value_30d at 8.9e304, one event away from infinity."""
        store: FeatureStore = await make_store()
        first = [ev(1, ts=T0, value=1e308)]
        await store.apply(first)
        before = await store.get("c1")
        batch = [ev(2, ts=T0 + 60, value=1e308), ev(3, ts=T0 + 120), ev(4, cid="c2", ts=T0)]
        result = await store.apply(batch)
        assert rejected_positions(batch, result) == {0: "overflow"}
        assert result["c1"].applied == 1
        after = await store.get("c1")
        assert all(math.isfinite(v) for v in after.values())
        assert close(after, reference([*first, batch[1]], max_types=32)["c1"])
        assert after != before
        assert result["c2"].applied == 1

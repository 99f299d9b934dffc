"""Properties of the pure feature math and of the exactly-once store rules (hypothesis)."""

from __future__ import annotations

import asyncio
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.feature_vector import feature_vector
from online_models.features import DAY_S, FeatureSpec, active_days, apply_event, catalogue, replay
from streams.contracts import CustomerEvent
from streams.redis.feature_store import InMemoryFeatureStore
from streams.settings import FeatureSettings

T0 = 1_767_225_600.0
KINDS = ["session", "support_ticket", "purchase", "login"]

Event = tuple[str, float, float | None]

events_st = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.floats(min_value=0, max_value=90 * DAY_S, allow_nan=False).map(
            lambda x: T0 + round(x, 3)),
        st.one_of(st.none(), st.floats(min_value=-500, max_value=5000, allow_nan=False)),
    ),
    min_size=1, max_size=60,
)


def features_close(a: dict[str, float], b: dict[str, float], rel: float = 1e-9) -> bool:
    return a.keys() == b.keys() and all(
        math.isclose(a[k], b[k], rel_tol=rel, abs_tol=1e-9) for k in a)


def sorted_events(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e[1])


@settings(max_examples=200, deadline=None)
@given(events_st, st.randoms(use_true_random=False),
       st.floats(min_value=0, max_value=400 * DAY_S))
def test_any_permutation_gives_the_features_of_sorted_order(
        events: list[Event], rnd: random.Random, later: float) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    now = max(e[1] for e in events) + later
    expected = catalogue(replay(sorted_events(events)), now)
    assert features_close(catalogue(replay(shuffled), now), expected)


@settings(max_examples=100, deadline=None)
@given(events_st, st.floats(min_value=0, max_value=60 * DAY_S))
def test_decayed_counts_equal_the_batch_definition(events: list[Event], later: float) -> None:
    """The streaming value equals the batch sum over all events, at any later instant."""
    spec = FeatureSpec()
    now = max(e[1] for e in events) + later
    got = catalogue(replay(events, spec), now, spec)
    for h in spec.half_lives_days:
        name = f"{h:g}"
        for kind in {e[0] for e in events}:
            batch = sum(2 ** ((t - now) / (h * DAY_S)) for k, t, _ in events if k == kind)
            assert math.isclose(got[f"count_{name}d.{kind}"], batch, rel_tol=1e-9, abs_tol=1e-12)
            values = [(t, v) for k, t, v in events if k == kind and v is not None]
            if values:
                batch_v = sum(v * 2 ** ((t - now) / (h * DAY_S)) for t, v in values)
                assert math.isclose(got[f"value_{name}d.{kind}"], batch_v, rel_tol=1e-9,
                                    abs_tol=1e-6)


@settings(max_examples=100, deadline=None)
@given(events_st, st.floats(min_value=0, max_value=40 * DAY_S))
def test_active_days_equal_the_batch_definition(events: list[Event], later: float) -> None:
    now = max(e[1] for e in events) + later
    state = replay(events)
    today = math.floor(now / DAY_S)
    for window in (1, 7, 30, 32):
        days = {math.floor(t / DAY_S) for _, t, _ in events}
        expected = sum(1 for d in days if today - window < d <= today)
        assert active_days(state, now, window) == expected


def test_a_silent_customer_decays_without_any_new_event() -> None:
    state = replay([("session", T0 + i * 3600.0, None) for i in range(20)])
    week = catalogue(state, T0 + 7 * DAY_S)
    month = catalogue(state, T0 + 37 * DAY_S)
    assert month["days_since_last"] > week["days_since_last"] > 6
    assert math.isclose(month["count_30d"], week["count_30d"] / 2, rel_tol=1e-9)
    assert month["active_days_30d"] == 0.0
    assert month["trend"] < week["trend"] < 0.0


def test_trend_is_bounded_and_tenure_scaled() -> None:
    spec = FeatureSpec()
    newcomer = catalogue(replay([("session", T0, None)]), T0)
    assert abs(newcomer["trend"]) < 0.05  # a first event is not a surge
    steady = replay([("session", T0 + d * DAY_S, None) for d in range(120)])
    assert abs(catalogue(steady, T0 + 119 * DAY_S)["trend"]) < 0.1
    surge = replay([("session", T0 + d * DAY_S, None) for d in range(0, 120, 10)]
                   + [("session", T0 + 119 * DAY_S + i, None) for i in range(30)])
    short, long = spec.trend
    assert 1.0 < catalogue(surge, T0 + 119 * DAY_S)["trend"] <= long / short - 1


def test_ratio_between_types_and_overflow_bucket() -> None:
    spec = FeatureSpec(max_types=2, ratios=(("support_ticket", "session"),))
    state = replay([("session", T0, None), ("session", T0 + 1, None),
                    ("support_ticket", T0 + 2, None), ("x", T0 + 3, None), ("y", T0 + 4, None)],
                   spec)
    f = catalogue(state, T0 + 5, spec)
    assert f["events_total._other"] == 2.0
    assert math.isclose(f["ratio.support_ticket_per_session"], 0.5, rel_tol=1e-4)
    assert catalogue(replay([("session", T0, None)], spec), T0, spec)[
        "ratio.support_ticket_per_session"] == 0.0


def test_reference_time_rebases_so_nothing_overflows() -> None:
    state = replay([("session", T0 + d * DAY_S, None) for d in range(0, 3000, 7)])
    assert state["r"] == math.floor((T0 + 2996 * DAY_S) / DAY_S) * DAY_S
    decayed = [v for f, v in state.items() if f[0] in "cs"]
    assert decayed
    assert all(0.0 < v < 100.0 for v in decayed)  # each term <= 2, old terms decayed
    vector = feature_vector(state, T0 + 3000 * DAY_S)
    assert all(math.isfinite(v) for v in vector.values())


def test_read_before_the_newest_event_reads_at_the_newest_event() -> None:
    state = apply_event({}, "session", T0 + 100, None)
    assert catalogue(state, T0) == catalogue(state, T0 + 100)


# --- exactly-once through the store rules (in-memory twin of the Redis script) ---


def to_events(events: list[Event], cid: str = "c1") -> list[CustomerEvent]:
    return [CustomerEvent(f"e{i}", cid, k, t, v) for i, (k, t, v) in enumerate(events)]


def run(store: InMemoryFeatureStore, batches: list[list[CustomerEvent]]) -> dict[str, float]:
    async def go() -> dict[str, float]:
        for b in batches:
            await store.apply(b)
        return await store.get("c1")

    return asyncio.run(go())


@settings(max_examples=150, deadline=None)
@given(events_st, st.data())
def test_replaying_any_prefix_twice_gives_the_same_state(events: list[Event],
                                                         data: st.DataObject) -> None:
    stream = to_events(events)
    cut = data.draw(st.integers(min_value=0, max_value=len(stream)))
    ring = data.draw(st.integers(min_value=1, max_value=8))
    once = run(InMemoryFeatureStore(FeatureSettings(dedup_ids=ring)), [stream])
    twice = run(InMemoryFeatureStore(FeatureSettings(dedup_ids=ring)),
                [stream[:cut], stream[:cut], stream[cut:], stream[:cut]])
    assert twice == once


def bounded_disorder(events: list[CustomerEvent], window: int,
                     rnd: random.Random) -> list[CustomerEvent]:
    """Shuffle sorted events within consecutive blocks of ``window``: no event is displaced
    past ``window - 1`` others."""
    ordered = sorted(events, key=lambda e: e.ts)
    out = []
    for i in range(0, len(ordered), window):
        block = ordered[i:i + window]
        rnd.shuffle(block)
        out.extend(block)
    return out


@settings(max_examples=150, deadline=None)
@given(events_st, st.randoms(use_true_random=False), st.integers(min_value=2, max_value=16))
def test_disorder_within_the_ring_bound_gives_the_features_of_sorted_order(
        events: list[Event], rnd: random.Random, ring: int) -> None:
    stream = to_events(events)
    # distinct times: ties at the floor are "late" by definition (ts <= dfloor)
    stream = [e for i, e in enumerate(stream) if all(e.ts != f.ts for f in stream[:i])]
    now = max(e.ts for e in stream) + DAY_S
    settings_ = FeatureSettings(dedup_ids=ring)
    sorted_state = run(InMemoryFeatureStore(settings_), [sorted(stream, key=lambda e: e.ts)])
    mixed = bounded_disorder(stream, ring, rnd)
    mixed_state = run(InMemoryFeatureStore(settings_), [mixed, mixed[: len(mixed) // 2]])
    assert features_close(catalogue(mixed_state, now), catalogue(sorted_state, now))


def test_events_beyond_the_bound_are_late_not_double_counted() -> None:
    store = InMemoryFeatureStore(FeatureSettings(dedup_ids=3))
    newer = [CustomerEvent(f"n{i}", "c1", "session", T0 + 100 + i) for i in range(5)]
    old = CustomerEvent("old", "c1", "session", T0)

    async def go() -> None:
        await store.apply(newer)
        result = await store.apply([old, newer[0]])
        assert (result["c1"].applied, result["c1"].late) == (0, 2)

    asyncio.run(go())
    assert run(store, [])["n"] == 5.0


def _vector_from_catalogue(state: dict[str, float], now: float,
                           spec: FeatureSpec) -> dict[str, float]:
    """The model input by its definition: the catalogue, counts/sums/ratios through log1p."""
    out = {}
    for name, x in catalogue(state, now, spec).items():
        if name.startswith(("events_total", "count_", "ratio.", "value_")):
            out["log_" + name] = math.copysign(math.log1p(abs(x)), x)
        else:
            out[name] = x
    return out


@given(events_st, st.floats(min_value=0, max_value=60 * DAY_S),
       st.sampled_from([FeatureSpec(), FeatureSpec(half_lives_days=(2.0, 14.0), trend=(2.0, 14.0),
                                                   ratio_half_life_days=14.0,
                                                   ratios=(("a", "b"), ("c", "a")),
                                                   active_day_windows=(3,))]))
def test_the_fused_feature_vector_is_the_transformed_catalogue(
        events: list[Event], later: float, spec: FeatureSpec) -> None:
    state = replay(events, spec)
    now = max(ts for _, ts, _ in events) + later
    want = _vector_from_catalogue(state, now, spec)
    got = feature_vector(state, now, spec)
    assert list(got) == list(want)  # same names in the same order (the model sums in order)
    for name, value in want.items():
        assert math.isclose(got[name], value, rel_tol=1e-12, abs_tol=1e-12), name

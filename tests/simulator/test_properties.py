"""Invariants that hold for any configuration (property-based, small runs)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.simulator import PriceIncrease, SimulationConfig, simulate
from streams.simulator.schema import MS_PER_DAY, PLAN_CHANGE, REACTIVATION, midnight_ms

configs = st.builds(
    SimulationConfig,
    seed=st.integers(0, 2**32 - 1),
    n_customers=st.integers(1, 150),
    start=st.dates(dt.date(2000, 1, 1), dt.date(2100, 1, 1)),
    days=st.integers(1, 40),
    initial_share=st.floats(0.0, 1.0),
    churn_base_rate=st.floats(0.0, 0.9),
    signal_strength=st.floats(0.0, 6.0),
    no_warning_share=st.floats(0.0, 1.0),
    events_per_active_day=st.floats(0.1, 20.0),
    regime_change_day=st.none() | st.integers(0, 10),
    return_share=st.floats(0.0, 1.0),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_invariants(config: SimulationConfig) -> None:
    sim = simulate(config)
    ev, labels = sim.events, sim.labels
    start = midnight_ms(config.start)
    assert np.all(np.diff(ev.ts_ms) >= 0)
    assert np.all(np.diff(labels.ts_ms) >= 0)
    if len(ev):
        assert ev.ts_ms.min() >= start
        assert ev.ts_ms.max() < start + config.days * MS_PER_DAY
    truth = sim.ground_truth()
    assert int(truth["n_churns"].sum()) == len(labels)
    assert len(sim.daily) == config.days
    assert int(sim.daily["events"].sum()) == len(ev)
    reactivations = set(sim.properties.change_codes[REACTIVATION].ravel().tolist())
    # after each churn, a customer's next event (if any) is their reactivation
    for c, ts in zip(labels.customer.tolist(), labels.ts_ms.tolist(), strict=True):
        later = np.flatnonzero((ev.customer == c) & (ev.ts_ms >= ts))
        if later.size:
            i = int(later[0])
            assert ev.ts_ms[i] > ts
            assert ev.etype[i] == PLAN_CHANGE
            assert int(ev.prop[i]) in reactivations


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_same_seed_same_arrays(seed: int) -> None:
    cfg = SimulationConfig(seed=seed, n_customers=60, days=20, return_share=0.5)
    a, b = simulate(cfg), simulate(cfg)
    for name in ("ts_ms", "customer", "etype", "prop"):
        assert np.array_equal(getattr(a.events, name), getattr(b.events, name))
    assert np.array_equal(a.events.value, b.events.value, equal_nan=True)
    assert a.ground_truth().equals(b.ground_truth())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_customers": 0}, "n_customers"),
        ({"days": 0}, "days"),
        ({"seed": -1}, "seed"),
        ({"churn_base_rate": 1.0}, "churn_base_rate"),
        ({"signal_strength": -0.1}, "signal_strength"),
        ({"no_warning_share": 1.5}, "no_warning_share"),
        ({"events_per_active_day": 0.0}, "events_per_active_day"),
        ({"regime_change_day": -1}, "regime_change_day"),
        ({"price_increases": (PriceIncrease("gold", 3, 0.1),)}, "unknown plan"),
        ({"price_increases": (PriceIncrease("basic_monthly", 500, 0.1),)}, "outside"),
    ],
)
def test_invalid_configs_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulationConfig().replace(**changes)


def test_default_price_schedule_follows_the_period() -> None:
    incs = SimulationConfig(days=100).resolved_price_increases
    assert [(i.plan, i.day) for i in incs] == [("basic_monthly", 35), ("pro_monthly", 70)]
    assert SimulationConfig(price_increases=()).resolved_price_increases == ()

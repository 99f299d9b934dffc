"""Realised churn rate and event volumes match the knobs.

Tolerances: the monthly churn rate within 10 % (relative) of ``churn_base_rate`` and activity
events per active customer-day within 4 % of ``events_per_active_day`` (with 10-20k
customers the sampling error is about 2 % and 0.5 % respectively).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streams.simulator import Simulation, SimulationConfig, simulate
from streams.simulator.analysis import activity_per_active_day, monthly_churn_rate
from streams.simulator.schema import MS_PER_DAY, midnight_ms, to_epoch_ms

HIGH = SimulationConfig(
    seed=5, n_customers=10_000, days=91, churn_base_rate=0.10, events_per_active_day=6.0,
    return_share=0.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def high_sim() -> Simulation:
    return simulate(HIGH)


def _rate_from_truth(sim: Simulation) -> float:
    """Monthly churn rate from the truth file alone (needs ``return_share == 0``)."""
    truth = sim.ground_truth()
    start = midnight_ms(sim.config.start)
    end = start + sim.config.days * MS_PER_DAY
    join = to_epoch_ms(truth["join_ts"])
    churn = to_epoch_ms(truth["churn_ts"])
    stop = np.where(churn < 0, end, churn)
    exposure_days = float((stop - np.maximum(join, start)).sum()) / MS_PER_DAY
    churns = int(truth["churned"].sum())
    return 1.0 - (1.0 - churns / exposure_days) ** 30


def test_churn_rate_matches_default_knob(large_sim: Simulation) -> None:
    target = large_sim.config.churn_base_rate
    assert monthly_churn_rate(large_sim) == pytest.approx(target, rel=0.10)


def test_churn_rate_matches_high_knob(high_sim: Simulation) -> None:
    assert monthly_churn_rate(high_sim) == pytest.approx(0.10, rel=0.10)
    assert _rate_from_truth(high_sim) == pytest.approx(0.10, rel=0.10)


def test_no_warning_share_matches_knob(large_sim: Simulation) -> None:
    causes = large_sim.ground_truth()["churn_cause"].value_counts(normalize=True)
    assert causes["no_warning"] == pytest.approx(large_sim.config.no_warning_share, abs=0.04)


@pytest.mark.parametrize("which", ["large", "high"])
def test_activity_volume_matches_knob(
    which: str, large_sim: Simulation, high_sim: Simulation
) -> None:
    sim = large_sim if which == "large" else high_sim
    assert activity_per_active_day(sim) == pytest.approx(sim.config.events_per_active_day, rel=0.04)


def test_rare_events_come_on_top_at_low_rates(large_sim: Simulation) -> None:
    daily = large_sim.daily
    per_day = daily[["support_ticket", "complaint", "payment_failure", "plan_change"]].sum()
    per_day = per_day / daily["active"].sum()
    assert (per_day > 0).all()
    assert float(per_day.sum()) < 0.1


def test_weekends_are_quieter(large_sim: Simulation) -> None:
    daily = large_sim.daily
    weekday = pd.to_datetime(large_sim.config.start) + pd.to_timedelta(daily["day"], unit="D")
    per_active = daily["session"] / daily["active"]
    weekend = weekday.dt.dayofweek >= 5
    ratio = per_active[weekend].mean() / per_active[~weekend].mean()
    assert 0.55 < ratio < 0.75  # profile: 0.71 vs about 1.12


def test_customers_join_over_the_period(large_sim: Simulation) -> None:
    joins = large_sim.daily["joins"].to_numpy()
    expected = (
        large_sim.config.n_customers * (1 - large_sim.config.initial_share) / large_sim.config.days
    )
    assert joins.mean() == pytest.approx(expected, rel=0.05)
    assert np.count_nonzero(joins) == large_sim.config.days

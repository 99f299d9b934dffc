"""The behavioural signal is really there, and only as strong as the knobs say.

A logistic regression on simple per-customer aggregates (sessions in the last 14 days and
their trend against the prior 14, tickets, complaints and payment failures in the last 30,
price-increase notices in the last 60), taken at several observation dates, predicts churn
in the next 30 days on held-out customers.
"""

from __future__ import annotations

import pytest

from streams.simulator import PriceIncrease, Simulation, SimulationConfig, simulate
from streams.simulator.analysis import FEATURE_NAMES, heldout_auc, observations, roc_auc

#: Observation days (28 days of history before, 30 days of horizon after each).
OBS_DAYS = (35, 49, 63, 77, 90)


def test_default_signal_is_clearly_better_than_chance_but_not_perfect(
    large_sim: Simulation,
) -> None:
    auc = heldout_auc(large_sim, OBS_DAYS)
    assert 0.72 < auc < 0.97


def test_without_no_warning_churn_the_signal_is_stronger(
    large_sim: Simulation, large_config: SimulationConfig
) -> None:
    strong = simulate(large_config.replace(no_warning_share=0.0))
    auc = heldout_auc(strong, OBS_DAYS)
    assert heldout_auc(large_sim, OBS_DAYS) + 0.03 < auc < 0.97


def test_zero_signal_strength_gives_chance_auc(large_config: SimulationConfig) -> None:
    flat = simulate(large_config.replace(signal_strength=0.0))
    assert heldout_auc(flat, OBS_DAYS) == pytest.approx(0.5, abs=0.06)


def test_regime_change_switches_what_drives_churn() -> None:
    prices = (
        PriceIncrease("basic_monthly", 20, 0.2),
        PriceIncrease("pro_monthly", 80, 0.2),
        PriceIncrease("basic_annual", 85, 0.2),
    )
    cfg = SimulationConfig(seed=13, n_customers=20_000, days=150, price_increases=prices)
    drift = simulate(cfg.replace(regime_change_day=60))
    complaints = FEATURE_NAMES.index("complaints_30d")
    prices_seen = FEATURE_NAMES.index("price_increase_60d")

    def univariate(sim: Simulation, days: tuple[int, ...], column: int) -> float:
        obs = observations(sim, days)
        return roc_auc(obs.y, obs.X[:, column])

    before, after = (30, 40), (95, 105, 115)
    assert univariate(drift, before, complaints) > 0.55
    assert univariate(drift, after, complaints) < 0.54
    assert univariate(drift, after, prices_seen) > univariate(drift, before, prices_seen)
    drivers = drift.ground_truth().set_index("churn_ts")["churn_driver"].dropna().sort_index()
    late = drivers[drivers.index >= "2026-03-31"].value_counts(normalize=True)
    assert late.get("complaints", 0.0) + late.get("open_tickets", 0.0) < 0.02

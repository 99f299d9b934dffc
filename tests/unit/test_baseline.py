"""The monthly-refit batch baseline: the fit, the observation dates, and no peeking."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from online_models.baseline import BaselineRow, fit_logistic, matrix, month_starts, run_baseline

DAY = 86400.0


def utc(y: int, m: int, d: int) -> float:
    return dt.datetime(y, m, d, tzinfo=dt.UTC).timestamp()


def test_month_starts_cross_the_year_and_exclude_the_first_instant() -> None:
    got = month_starts(utc(2025, 11, 1), utc(2026, 2, 1))
    assert got == [utc(2025, 12, 1), utc(2026, 1, 1), utc(2026, 2, 1)]
    assert month_starts(utc(2026, 1, 2), utc(2026, 1, 30)) == []


def test_fit_matches_known_coefficients_and_balancing_centres_predictions() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5000, 3))
    y = rng.random(5000) < 1 / (1 + np.exp(-(1.5 * x[:, 0] - 0.8 * x[:, 2] - 2.5)))
    plain = fit_logistic(x, y, ["a", "b", "c"], l2=0.0, balanced=False)
    assert plain.weights == pytest.approx([1.5, 0.0, -0.8], abs=0.15)
    assert plain.predict(x).mean() == pytest.approx(y.mean(), abs=0.01)  # calibrated
    balanced = fit_logistic(x, y, ["a", "b", "c"], balanced=True)
    p = balanced.predict(x)
    # equal class weights: mean prediction of churners and stayers straddle 0.5
    assert p[y].mean() > 0.5 > p[~y].mean()


def test_constant_and_missing_features_do_not_break_the_fit() -> None:
    rows = [BaselineRow("a", 0.0, {"k": 1.0}, True), BaselineRow("b", 0.0, {}, False),
            BaselineRow("c", 0.0, {"k": float("nan")}, False)]
    assert matrix(rows, ["k", "z"]).tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    fit = fit_logistic(np.ones((50, 1)), np.arange(50) % 2 == 0, ["one"])
    assert np.isfinite(fit.predict(np.ones((2, 1)))).all()


def test_refit_uses_only_rows_whose_outcome_window_has_closed() -> None:
    rng = np.random.default_rng(5)
    horizon = 30 * DAY
    dates = [utc(2026, m, 1) for m in range(1, 7)]
    rows = [BaselineRow(f"c{i}", d, {"a": float(a)}, bool(a + rng.normal() > 1.2))
            for d in dates for i, a in enumerate(rng.normal(size=300))]
    result = run_baseline(rows, horizon)
    for fit in result.fits:
        closed = [r for r in rows if r.t + horizon <= fit["t"]]
        assert fit["train_rows"] == len(closed)
        assert fit["train_positives"] == sum(r.churned for r in closed)
    # nothing is scored before a month of outcomes has closed; then every date is scored
    assert result.first_scored is not None and result.first_scored > dates[0]
    scored_dates = sorted({row.t for row, _ in result.scored})
    assert scored_dates == [d for d in dates if d >= result.first_scored]

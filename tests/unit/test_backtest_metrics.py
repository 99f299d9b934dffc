"""Report metrics against brute force and their edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.report_metrics import (
    DAY_S,
    calibration_bins,
    lift_by_decile,
    precision_recall_at,
    roc_auc,
    summarize,
    warning_days,
)


def brute_auc(p: list[float], y: list[bool]) -> float:
    pos = [a for a, t in zip(p, y, strict=True) if t]
    neg = [a for a, t in zip(p, y, strict=True) if not t]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0
               for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9]), st.booleans()),
                min_size=2, max_size=40))
def test_auc_equals_the_pairwise_definition_with_ties(pairs: list[tuple[float, bool]]) -> None:
    p, y = [a for a, _ in pairs], [b for _, b in pairs]
    if all(y) or not any(y):
        assert np.isnan(roc_auc(p, y))
    else:
        assert roc_auc(p, y) == pytest.approx(brute_auc(p, y))


def test_lift_calibration_and_threshold_account_for_every_row() -> None:
    rng = np.random.default_rng(2)
    p = rng.random(1003)
    y = rng.random(1003) < p * 0.3
    lift = lift_by_decile(p, y)
    assert sum(r.n for r in lift) == 1003
    assert lift[-1].cumulative_capture == pytest.approx(1.0)
    assert lift[0].lift > 1.5 > lift[-1].lift  # informative scores: the top decile is richer
    assert sum(b.n for b in calibration_bins(p, y)) == 1003
    at = precision_recall_at(p, y, 0.5)
    assert at["flagged"] == (p >= 0.5).sum()
    assert at["recall"] == pytest.approx(((p >= 0.5) & y).sum() / y.sum())


def test_tied_scores_give_no_lift() -> None:
    y = np.arange(100) % 5 == 0
    assert all(r.lift == pytest.approx(1.0) for r in lift_by_decile(np.full(100, 0.3), y))


def test_warning_counts_only_scores_inside_the_horizon_before_the_churn() -> None:
    times = np.array([0.0, 10.0, 20.0, 29.0, 30.0, 31.0]) * DAY_S
    probs = np.array([0.9, 0.2, 0.2, 0.8, 0.95, 0.99])
    w = warning_days([("c", 30 * DAY_S)], {"c": (times, probs)}, 0.5, horizon_s=25 * DAY_S)
    assert w[0].alert_t == 29 * DAY_S  # day 0 is before T - H, day 30 is the churn instant
    assert w[0].days == pytest.approx(1.0)
    assert warning_days([("z", DAY_S)], {}, 0.5, DAY_S)[0].alert_t is None


def test_summary_is_json_ready_and_periods_cover_all_rows() -> None:
    t = np.arange(300) * DAY_S / 2
    p = np.linspace(0, 1, 300)
    y = p > 0.7
    s = summarize(t, p, y, 0.5, period_s=30 * DAY_S)
    assert sum(r["n"] for r in s["auc_over_time"]) == 300
    assert s["roc_auc"] == 1.0

"""The alert section of the backtest report (streams/offline/backtest_alerts.py, alerts/measure.py)
on a score log built by hand: the budget holds the weekly volume, precision and warning count
only alerts that were right, and the baseline alerts as many customers as the online policy."""

from __future__ import annotations

import random

from alerts.budget import Budget, BudgetParams
from alerts.measure import measure
from alerts.policy import PolicyParams
from streams.offline.backtest_alerts import alert_section, baseline_alerts
from streams.offline.backtest_stores import ScoreLog

DAY = 86400.0


def score_log(customers: int = 300, days: int = 84, seed: int = 3
              ) -> tuple[ScoreLog, list[tuple[str, float]]]:
    """Daily scores; a tenth of the customers churn, their score rising over the 20 days
    before (a model that sees it coming), everyone else noisy around 0.1."""
    rng = random.Random(seed)
    log = ScoreLog("churn-scores")
    log.versions["1-logreg"] = 0
    churn_at = {f"c{i}": rng.uniform(30, days - 1) * DAY for i in range(0, customers, 10)}
    for day in range(days):
        for i in range(customers):
            cid = f"c{i}"
            t = (day + rng.random()) * DAY
            end = churn_at.get(cid)
            if end is not None and t >= end:
                continue
            p = min(0.99, max(0.01, rng.gauss(0.1, 0.04)))
            if end is not None and end - t < 20 * DAY:
                p = min(0.99, p + 0.5 * (1 - (end - t) / (20 * DAY)))
            log.cid.append(log.customers.setdefault(cid, len(log.customers)))
            log.t.append(t)
            log.p.append(p)
            log.version.append(0)
            log.sweep.append(0)
    order = sorted(range(len(log.t)), key=lambda k: log.t[k])
    for name in ("cid", "t", "p", "version", "sweep"):
        col = getattr(log, name)
        setattr(log, name, type(col)(col.typecode, [col[k] for k in order]))
    return log, sorted((c, t) for c, t in churn_at.items())


def test_the_budgeted_policy_is_measured_per_week() -> None:
    log, churns = score_log()
    budget = BudgetParams(budgets=(Budget(share_per_week=0.03),), window=600, min_window=100)
    section = alert_section(log, churns, horizon_s=30 * DAY, origin=0.0, clock=84 * DAY,
                            policy=PolicyParams(), budget=budget)
    weeks = section["online"]["weeks"]
    assert section["mode"] == "budget"
    assert all(w["budget"] == 0.03 * w["active"] for w in weeks)
    later = [w for w in weeks if w["week"] >= 4]
    assert all(w["alerts"] <= 1.3 * w["budget"] for w in later), later
    total = section["online"]["total"]
    # the risers are the top of the ranking: alerts are mostly right and warn days ahead
    assert total["precision"] > 3 * total["base_rate"]
    assert total["warned_churner_days"]["median"] > 3


def test_fixed_thresholds_are_measured_too() -> None:
    log, churns = score_log(customers=100, days=56)
    section = alert_section(log, churns, horizon_s=30 * DAY, origin=0.0, clock=56 * DAY,
                            policy=PolicyParams(enter=0.3, exit=0.2, high=0.5, critical=0.7),
                            budget=None)
    assert section["mode"] == "thresholds" and section["thresholds"]["enter"] == 0.3
    assert section["online"]["total"]["alerts"] > 0
    assert "budget" not in section["online"]["weeks"][0]


def test_the_baseline_alerts_as_many_customers_as_the_online_policy() -> None:
    online = [("a", 1.0, "medium"), ("b", 2.0, "high"), ("a", 3.0, "critical"),
              ("c", 12.0, "medium")]
    scored = [("a", 0.0, 0.2), ("b", 0.0, 0.9), ("c", 0.0, 0.5), ("d", 0.0, 0.7),
              ("a", 10.0, 0.1), ("b", 10.0, 0.3), ("c", 10.0, 0.2)]
    assert baseline_alerts(scored, online) == [("b", 0.0), ("d", 0.0), ("b", 10.0)]


def test_unresolved_alerts_are_left_out_of_precision() -> None:
    m = measure([("a", 0.0), ("b", 0.0)], [("a", 5 * DAY)], horizon_s=30 * DAY, origin=0.0,
                clock=10 * DAY)
    week = m["weeks"][0]
    assert (week["right"], week["resolved"], week["precision"]) == (1, 1, 1.0)

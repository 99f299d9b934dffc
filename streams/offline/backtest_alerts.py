"""The alert policy over the scores a backtest served, measured per week (report section).

The served scores (:class:`~streams.offline.backtest_stores.ScoreLog`, in the order the worker
published them: one partition) go through the alerter's pure policy — thresholds, or budgets
(:mod:`alerts.budget`, exactly as :func:`alerts.batch.plan_partition` runs them live) — and the
alerts are measured against the churn labels (:func:`alerts.measure.measure`). The batch
baseline is measured at the **same alert volume**: at each of its monthly dates it alerts the
customers it ranks highest, as many as the online policy alerted (distinct customers) until the
next date. Scores of the untrained model (0.5 for everyone) are left out, as in the rest of the
report.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from alerts.budget import BudgetParams, BudgetState, rank_value
from alerts.measure import WEEK_S, measure, summarize_weeks, week_origin
from alerts.policy import PolicyParams, RiskState, ScoreInput, update
from online_models.model import UNTRAINED_VERSION
from streams.offline.backtest_stores import ScoreLog


def score_inputs(scores: ScoreLog) -> Iterator[tuple[int, ScoreInput]]:
    """(offset, the policy's input) of every served score of a trained model, in the order
    served (the untrained start is left out)."""
    names = {i: c for c, i in scores.customers.items()}
    skip = scores.versions.get(UNTRAINED_VERSION, -1)
    for i in range(len(scores)):
        if scores.version[i] != skip:
            yield i, ScoreInput(names[scores.cid[i]], str(i), scores.p[i], scores.t[i],
                                reason="sweep" if scores.sweep[i] else "event")


def replay_alerts(scores: ScoreLog, policy: PolicyParams, budget: BudgetParams | None
                  ) -> tuple[list[tuple[str, float, str]], BudgetState | None]:
    """(customer, event time, severity) of every alert the policy raises over the log."""
    states: dict[str, RiskState] = {}
    state = BudgetState.initial(budget) if budget is not None else None
    rank_by = budget.rank_by if budget is not None else "probability"
    out: list[tuple[str, float, str]] = []
    for i, s in score_inputs(scores):
        cid = s.customer_id
        before = states.get(cid, RiskState())
        if state is None:
            new, decisions = update(before, s, policy, 0.0)
        else:
            if rank_by != "probability":
                s = ScoreInput(cid, str(i), s.score, s.ts, reason=s.reason,
                               rank=rank_value(s, rank_by))
            new, decisions = state.step(i, before, s, policy, 0.0)
        states[cid] = new
        out.extend((cid, d.ts, d.severity) for d in decisions)
    return out, state


def active_weeks(scores: ScoreLog, origin: float) -> list[tuple[str, float]]:
    """(customer, first score time) per customer and week (trained-model scores)."""
    if not len(scores):
        return []
    cid = np.frombuffer(scores.cid, dtype=np.int_)
    t = np.frombuffer(scores.t, dtype=np.float64)
    keep = np.frombuffer(scores.version, dtype=np.int_) != scores.versions.get(
        UNTRAINED_VERSION, -1)
    cid, t = cid[keep], t[keep]
    week = np.floor((t - origin) / WEEK_S).astype(np.int64)
    order = np.lexsort((t, week, cid))
    cid, week, t = cid[order], week[order], t[order]
    first = np.r_[True, (cid[1:] != cid[:-1]) | (week[1:] != week[:-1])]
    names = {i: c for c, i in scores.customers.items()}
    return [(names[int(c)], float(x)) for c, x in zip(cid[first], t[first], strict=True)]


def weekly_budget(active: Sequence[tuple[str, float]], origin: float,
                  budget: BudgetParams) -> dict[int, float]:
    """Each week's alert budget (all teams): per-day budgets x 7, share budgets x the week's
    active customers."""
    counts: dict[int, int] = {}
    for _, t in active:
        w = math.floor((t - origin) / WEEK_S)
        counts[w] = counts.get(w, 0) + 1
    return {w: sum(b.weekly(n, 1) for b in budget.budgets) for w, n in counts.items()}


def baseline_alerts(scored: Sequence[tuple[str, float, float]],
                    online: Sequence[tuple[str, float, str]]) -> list[tuple[str, float]]:
    """The baseline's alerts at the online policy's volume: at each of its dates, its top-k
    customers, k = distinct customers the online policy alerted from that date to the next."""
    dates = sorted({t for _, t, _ in scored})
    out: list[tuple[str, float]] = []
    for j, d in enumerate(dates):
        end = dates[j + 1] if j + 1 < len(dates) else math.inf
        k = len({c for c, t, _ in online if d <= t < end})
        ranked = sorted(((p, c) for c, t, p in scored if t == d), reverse=True)[:k]
        out += [(c, d) for _, c in ranked]
    return out


def alert_section(scores: ScoreLog, churns: Sequence[tuple[str, float]], *, horizon_s: float,
                  origin: float, clock: float, policy: PolicyParams,
                  budget: BudgetParams | None,
                  baseline: Sequence[tuple[str, float, float]] = ()) -> dict[str, Any]:
    """The ``alerts`` section of the backtest report (weeks: UTC ISO weeks, from the Monday
    of ``origin``'s week, as the budget counts them)."""
    origin = week_origin(origin)
    alerts, state = replay_alerts(scores, policy, budget)
    active = active_weeks(scores, origin)
    budgets = weekly_budget(active, origin, budget) if budget is not None else None
    online = measure([(c, t) for c, t, _ in alerts], churns, horizon_s=horizon_s,
                     origin=origin, clock=clock, active=active, budget=budgets)
    by_severity: dict[str, int] = {}
    for _, _, sev in alerts:
        by_severity[sev] = by_severity.get(sev, 0) + 1
    section: dict[str, Any] = {
        "mode": "budget" if budget is not None else "thresholds",
        "budgets": ([{"team": b.team, "categories": list(b.categories), "per_day": b.per_day,
                      "share_per_week": b.share_per_week} for b in budget.budgets]
                    if budget is not None else []),
        "thresholds": ({"enter": policy.enter, "exit": policy.exit, "high": policy.high,
                        "critical": policy.critical} if budget is None else None),
        "by_severity": by_severity,
        "online": online,
        "after_first_month": summarize_weeks(online["weeks"], skip_weeks=5, until=clock),
    }
    if state is not None:
        section["final_levels"] = {name: 2.0 ** t.level for name, t in state.teams.items()}
    if baseline:
        base = baseline_alerts(baseline, alerts)
        first = min(t for _, t, _ in baseline)
        later = [(c, t) for c, t in churns if t - horizon_s >= first]
        section["baseline"] = measure(base, later, horizon_s=horizon_s, origin=origin,
                                      clock=clock, active=[a for a in active if a[1] >= first])
        section["online_from_baseline_start"] = measure(
            [(c, t) for c, t, _ in alerts if t >= first], later, horizon_s=horizon_s,
            origin=origin, clock=clock, active=[a for a in active if a[1] >= first])
    return section

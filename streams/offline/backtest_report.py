"""The backtest report as data: the online path and the batch baseline, side by side.

Three views, all from :class:`~streams.offline.backtest.BacktestRun`:

``online``
    Every snapshot the path learned from, with the score that was *served* when it was taken
    and its outcome: what a retention team would have seen (delayed AUC over time, precision
    and recall at the threshold, lift, calibration).
``same_rows``
    The rows of the batch method — each active customer at each UTC month start — scored by
    the monthly-refit logistic regression (``baseline``) and by the online model version
    current at that instant (``online``): the fairest comparison, same customers, same
    instants, same features.
``warning``
    For every churn, how many days before it the first alert (score ≥ threshold within the
    horizon) would have come: from the online path's scores (every event and sweep score) and
    from the baseline's monthly scores.

:func:`build_report` returns plain JSON-ready data; :func:`write_report` writes
``report.json`` and ``report.html`` (:mod:`streams.offline.report_html`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from alerts.budget import BudgetParams
from alerts.policy import PolicyParams
from online_models.baseline import run_baseline
from online_models.calibration import expected_calibration_error, reliability, reliability_json
from online_models.model import UNTRAINED_VERSION
from online_models.report_metrics import summarize, warning_days, warning_summary
from streams.offline.backtest import BacktestRun, outcomes
from streams.offline.backtest_alerts import alert_section
from streams.timefmt import format_ts

DAY_S = 86400.0


def _clean(obj: Any) -> Any:
    """NaN and infinities become null (JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def build_report(run: BacktestRun, threshold: float, *, title: str = "churnpulse backtest",
                 inputs: dict[str, Any] | None = None, l2: float = 1.0,
                 alert_policy: PolicyParams | None = None,
                 alert_budget: BudgetParams | None = None) -> dict[str, Any]:
    """Every figure of the report (see the module docstring). With ``alert_policy`` the
    report also runs the alert policy (and ``alert_budget``, if any) over the served scores
    (:mod:`streams.offline.backtest_alerts`)."""
    horizon = run.policy.horizon_s
    period = 30 * DAY_S
    origin = run.first_ts
    # before the first resolution the untrained model says 0.5 for everyone: that is no
    # prediction (and would "alert" everyone at a 0.5 threshold), so it is left out
    res = [r for r in run.resolved if r.model_version != UNTRAINED_VERSION]
    online = summarize([r.t for r in res], [r.served for r in res], [r.churned for r in res],
                       threshold, period, origin)

    rows = outcomes(run)
    base = run_baseline([r for r, _, _ in rows], horizon, l2=l2)
    scored_ids = {(row.customer_id, row.t) for row, _ in base.scored}
    same = [(row, p_online) for row, p_online, _ in rows
            if (row.customer_id, row.t) in scored_ids]
    base_p = {(row.customer_id, row.t): p for row, p in base.scored}
    same_rows = {
        "rows": len(same),
        "dates": sorted({format_ts(row.t) for row, _ in same}),
        "baseline": summarize([r.t for r, _ in same],
                              [base_p[(r.customer_id, r.t)] for r, _ in same],
                              [r.churned for r, _ in same], threshold, period, origin),
        "online": summarize([r.t for r, _ in same], [p for _, p in same],
                            [r.churned for r, _ in same], threshold, period, origin),
        "fits": base.fits,
    }

    # days of warning: every churn whose horizon lies inside the scored history
    churns = [(c, t) for c, t in run.churns if t - horizon >= run.first_ts]
    trained_scores = run.scores.by_customer(skip_version=UNTRAINED_VERSION)
    online_w = warning_days(churns, trained_scores, threshold, horizon)
    monthly: dict[str, list[tuple[float, float]]] = {}
    for row, p in sorted(base.scored, key=lambda rp: rp[0].t):
        monthly.setdefault(row.customer_id, []).append((row.t, p))
    base_scores = {c: (np.array([t for t, _ in v]), np.array([p for _, p in v]))
                   for c, v in monthly.items()}
    first = base.first_scored
    base_churns = [(c, t) for c, t in churns if first is not None and t - horizon >= first]
    base_w = warning_days(base_churns, base_scores, threshold, horizon)
    online_same = warning_days(base_churns, trained_scores, threshold, horizon)

    learner = run.learner
    report = {
        "title": title,
        "generated_at": format_ts(time.time()),
        "inputs": inputs or {},
        "period": {"first": format_ts(run.first_ts) if run.first_ts else None,
                   "last": format_ts(run.last_ts) if run.last_ts else None,
                   "days": (run.last_ts - run.first_ts) / DAY_S},
        "settings": {"threshold": threshold, "horizon_days": horizon / DAY_S,
                     "observation_interval_hours": run.policy.interval_s / 3600,
                     "champion": learner.champion.name,
                     "challengers": [s.name for s in learner.challengers],
                     "baseline_l2": l2},
        "counts": {"events": run.n_events, "labels": run.n_labels,
                   "bad_labels": run.bad_labels, "churns": len(run.churns),
                   "customers": len(run.scores.customers), "scores": len(run.scores),
                   "batches": run.batches, "model_versions": run.version,
                   "resolved": len(run.resolved),
                   "resolved_untrained": len(run.resolved) - len(res),
                   "positives": sum(r.churned for r in run.resolved),
                   "pending_at_end": len(run.observations.all()),
                   "label_counts": dict(run.loop.counts.__dict__)},
        "speed": {"seconds": run.seconds, "events_per_second": run.events_per_second},
        "online": online,
        "same_rows": same_rows,
        "warning": {
            "online": warning_summary(online_w),
            "online_same_churns": warning_summary(online_same),
            "baseline": warning_summary(base_w),
            "baseline_first_scored": format_ts(first) if first is not None else None,
        },
        "learner": _clean(learner.report()),
    }
    report["calibration"] = {
        "ece_served": expected_calibration_error([r.served for r in res],
                                                 [r.churned for r in res]),
        "ece_monthly_online": expected_calibration_error([p for _, p in same],
                                                         [r.churned for r, _ in same]),
        "ece_baseline": expected_calibration_error([base_p[(r.customer_id, r.t)]
                                                    for r, _ in same],
                                                   [r.churned for r, _ in same]),
        "reliability_served": reliability_json(reliability([r.served for r in res],
                                                           [r.churned for r in res]))}
    if alert_policy is not None:
        report["alerts"] = alert_section(
            run.scores, run.churns, horizon_s=horizon, origin=run.first_ts,
            clock=run.last_ts, policy=alert_policy, budget=alert_budget,
            baseline=[(row.customer_id, row.t, p) for row, p in base.scored])
    return dict(_clean(report))


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``report.json`` and ``report.html`` in ``out_dir`` (created)."""
    from streams.offline.report_html import render_html

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    json_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path

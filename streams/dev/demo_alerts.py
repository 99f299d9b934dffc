"""The demo's alert and calibration figures: alerted customers per 1,000 active per week against
the budget, precision so far, and whether the served scores are calibrated probabilities."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

DAY_S = 86400.0


@dataclass
class AlertTally:
    """Alerted customers (first alert, event time) and churn labels seen by the demo.

    >>> t = AlertTally()
    >>> t.add_alert({"customer_id": "a", "ts": "2026-01-01T00:00:00+00:00"})
    >>> t.add_alert({"customer_id": "b", "ts": "2026-01-01T00:00:00+00:00"})
    >>> t.add_label(b'{"label_id":"l","customer_id":"a","ts":"2026-01-02T00:00:00Z",'
    ...             b'"churned":true}')
    >>> t.add_label(b'{"label_id":"m","customer_id":"z","ts":"2026-02-10T00:00:00Z",'
    ...             b'"churned":false}')
    >>> t.line(active=500, days=14, horizon_days=30.0)
    '2.0 alerted customers per 1,000 active per week · precision 1 of 2 resolved (50%)'
    """

    alerted: dict[str, float] = field(default_factory=dict)
    churned: dict[str, float] = field(default_factory=dict)
    clock: float = float("-inf")  # newest label time seen

    def add_alert(self, alert: dict[str, object]) -> None:
        from alerts.contracts import BadScore, parse_ts

        cid = alert.get("customer_id")
        if isinstance(cid, str) and cid not in self.alerted:
            with contextlib.suppress(BadScore):
                self.alerted[cid] = parse_ts(alert.get("ts"))

    def add_label(self, raw: bytes | None) -> None:
        from streams.contracts import decode_label
        from streams.errors import InvalidMessage

        try:
            label = decode_label(raw or b"")
        except InvalidMessage:
            return
        self.clock = max(self.clock, label.ts)
        if label.churned:
            self.churned.setdefault(label.customer_id, label.ts)

    def line(self, active: int, days: int, horizon_days: float,
             budget: float | None = None) -> str:
        """Alert load and precision so far (alerted customers who churned within the horizon
        of their first alert, of those whose outcome is known); ``budget``: alerted customers
        per 1,000 active per week the budget allows."""
        cap = f" (budget {budget:g})" if budget is not None else ""
        if not self.alerted or days <= 0 or active <= 0:
            return f"none yet{cap}"
        rate = 1000 * len(self.alerted) / active / (days / 7)
        horizon = horizon_days * DAY_S
        right = resolved = 0
        for cid, t in self.alerted.items():
            churn = self.churned.get(cid)
            if churn is not None and t < churn <= t + horizon:
                right += 1
                resolved += 1
            elif t + horizon <= self.clock:
                resolved += 1
        share = f" ({100 * right / resolved:.0f}%)" if resolved else ""
        return (f"{rate:.1f} alerted customers per 1,000 active per week{cap} · precision "
                f"{right} of {resolved} resolved{share}")


def budget_per_1000_week(env: Mapping[str, str], demo_budget: Mapping[str, str]) -> float | None:
    """Alerted customers per 1,000 active per week the alerter's budget allows (None: the
    alerter runs on thresholds, or on a per-day budget). The user's variables win.

    >>> budget_per_1000_week({}, {"CHURN_ALERTS__BUDGET__MODE": "budget",
    ...                           "CHURN_ALERTS__BUDGET__SHARE_PER_WEEK": "0.02"})
    20.0
    """
    def get(name: str) -> str | None:
        return env.get(name, demo_budget.get(name))

    share = get("CHURN_ALERTS__BUDGET__SHARE_PER_WEEK")
    if get("CHURN_ALERTS__BUDGET__MODE") != "budget" or share is None:
        return None
    with contextlib.suppress(ValueError):
        return 1000 * float(share)
    return None


def calibration_line(status: Mapping[str, object], uncalibrated: int = 0) -> str:
    """Whether the served model's scores are calibrated probabilities, from the learner's
    status (the champion's calibration counts, the served ECE).

    >>> calibration_line({})
    'no model version yet: untrained scores are not shown'
    >>> calibration_line({"champion": "logreg", "served": {"ece": 0.0123},
    ...                   "models": {"logreg": {"calibration": {"churners": 481,
    ...                                                         "stayers": 9519}}}})
    'calibrated on 481 churners, 9,519 stayers · served ECE 0.012'
    >>> calibration_line({"champion": "logreg", "models": {"logreg": {"calibration": {
    ...     "churners": 3, "stayers": 700}}}}, uncalibrated=50)
    'calibrating (3 churners, 700 stayers; 20 of each needed): 50 scores not shown, not alerted'
    """
    from online_models.calibration import MIN_CLASS_OUTCOMES, is_calibrated

    models = status.get("models")
    champion = models.get(str(status.get("champion"))) if isinstance(models, dict) else None
    cal = champion.get("calibration") if isinstance(champion, dict) else None
    if not isinstance(cal, dict):
        return "no model version yet: untrained scores are not shown"
    churners, stayers = int(cal.get("churners") or 0), int(cal.get("stayers") or 0)
    if not is_calibrated(churners, stayers):
        return (f"calibrating ({churners:,} churners, {stayers:,} stayers; "
                f"{MIN_CLASS_OUTCOMES} of each needed): {uncalibrated:,} scores not shown, "
                "not alerted")
    served = status.get("served")
    ece = served.get("ece") if isinstance(served, dict) else None
    ece_text = f"{ece:.3f}" if isinstance(ece, float) and ece == ece else "-"
    return f"calibrated on {churners:,} churners, {stayers:,} stayers · served ECE {ece_text}"


def closing_lines(tally: AlertTally, active: int, days: int, horizon_days: float,
                  budget: float | None, calibration: str, top: list[float]) -> str:
    """What the demo prints when it ends: alerts against the budget, precision, calibration
    and the top risks shown.

    >>> t = AlertTally()
    >>> t.add_alert({"customer_id": "a", "ts": "2026-01-01T00:00:00+00:00"})
    >>> print(closing_lines(t, 1000, 14, 30.0, 20.0, "calibrated on ...", [0.31, 0.2]))
    ... # doctest: +NORMALIZE_WHITESPACE
    alerted customers: 1 in 14 simulated days; the budget allows 40 (20 per 1,000 active per week)
    alert load · precision: 0.5 alerted customers per 1,000 active per week (budget 20) ·
    precision 0 of 0 resolved
    calibration: calibrated on ...
    top risks shown: 0.310, 0.200
    """
    allowed = (f"; the budget allows {budget * active / 1000 * days / 7:,.0f} ({budget:g} per "
               "1,000 active per week)" if budget is not None else "")
    return "\n".join([
        f"alerted customers: {len(tally.alerted):,} in {days} simulated days{allowed}",
        f"alert load · precision: {tally.line(active, days, horizon_days, budget)}",
        f"calibration: {calibration}",
        "top risks shown: " + (", ".join(f"{p:.3f}" for p in top) or "none (no calibrated "
                                                                      "scores yet)")])


def learner_line(status: dict[str, object]) -> str:
    """One line on the learner from its published status.

    >>> learner_line({})
    'waiting for the first resolved observations'
    >>> learner_line({"version": 3, "champion": "logreg", "resolved": 1200,
    ...               "served": {"roc_auc": 0.81}})
    'version 3-logreg · 1,200 resolved · served AUC 0.810'
    """
    if not status:
        return "waiting for the first resolved observations"
    served = status.get("served")
    auc = served.get("roc_auc") if isinstance(served, dict) else None
    auc_text = f"{auc:.3f}" if isinstance(auc, float) and auc == auc else "-"
    resolved = status.get("resolved", 0)
    count = f"{resolved:,}" if isinstance(resolved, int) else str(resolved)
    return (f"version {status.get('version')}-{status.get('champion')} · {count} resolved · "
            f"served AUC {auc_text}")

"""Did the alerts matter? Alerts against churn labels, per week (pure, no I/O).

Definitions (``H`` = the label horizon, weeks counted from ``origin``; callers pass a Monday
00:00 UTC, :func:`week_origin`, so the weeks are UTC ISO weeks, the ones the budget counts):

* an alerted customer of a week (their first alert of that week, at ``t``) is **right** when
  they churn within ``(t, t + H]``, **wrong** when the labels' clock has passed ``t + H``
  without a churn, else **unresolved** (left out of precision, counted);
* **precision** of a week: right / resolved alerted customers; the **base rate** of the same
  week: the share of its active customers (first score of the week at ``t``) who churn within
  ``(t, t + H]``, resolved ones only — the precision of alerting at random;
* **recall** of a week: of the churns in that week (whose horizon lies after ``origin``), the
  share whose customer had an alert in ``[churn - H, churn)``;
* **days of warning**: churn time minus alert time, for right alerts (quartiles), and per
  warned churner from their first alert inside the horizon.

>>> DAY = 86400.0
>>> m = measure([("a", 15 * DAY), ("b", 16 * DAY), ("a", 18 * DAY)], [("a", 40 * DAY)],
...             horizon_s=30 * DAY, origin=0.0, clock=80 * DAY,
...             active=[("a", 14.5 * DAY), ("b", 14.5 * DAY), ("c", 14.5 * DAY)])
>>> w = m["weeks"][0]
>>> w["week"], w["alerts"], w["customers"], w["precision"], round(w["base_rate"], 3)
(2, 3, 2, 0.5, 0.333)
>>> m["weeks"][1]["week"], m["weeks"][1]["recall"], m["total"]["warning_days"]["median"]
(5, 1.0, 25.0)
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

DAY_S = 86400.0
WEEK_S = 7 * DAY_S


def week_start_day(day: int) -> int:
    """The Monday (epoch day) of the UTC ISO week holding epoch ``day`` (1970-01-01, day 0,
    was a Thursday).

    >>> week_start_day(0), week_start_day(4), week_start_day(10), week_start_day(11)
    (-3, 4, 4, 11)
    """
    return day - (day + 3) % 7


def week_origin(ts: float) -> float:
    """Monday 00:00 UTC of the week holding ``ts`` (epoch seconds).

    >>> from datetime import datetime, timezone
    >>> t = datetime(2025, 9, 3, 15, 0, tzinfo=timezone.utc).timestamp()  # a Wednesday
    >>> datetime.fromtimestamp(week_origin(t), timezone.utc).isoformat()
    '2025-09-01T00:00:00+00:00'
    """
    return week_start_day(math.floor(ts / DAY_S)) * DAY_S


def quartiles(values: Sequence[float]) -> dict[str, float | None]:
    """p25, median, p75 (linear interpolation); None when empty.

    >>> quartiles([1.0, 2.0, 3.0, 4.0])
    {'n': 4, 'p25': 1.75, 'median': 2.5, 'p75': 3.25}
    """
    xs = sorted(values)
    if not xs:
        return {"n": 0, "p25": None, "median": None, "p75": None}

    def at(q: float) -> float:
        pos = q * (len(xs) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return {"n": len(xs), "p25": at(0.25), "median": at(0.5), "p75": at(0.75)}


def median_interval(values: Sequence[float], level: float = 0.9, draws: int = 1000
                    ) -> tuple[float, float] | None:
    """A bootstrap interval of the median (percentile method, a fixed seed: the same values
    give the same interval). With ~80 warned churners a median of days of warning moves by
    about ±2 days between samples; this says how much.

    >>> median_interval([float(x) for x in range(100)])
    (40.5, 57.5)
    """
    xs = list(values)
    if len(xs) < 2:
        return None
    rng = random.Random(0)
    n = len(xs)
    meds = sorted(statistics.median(rng.choices(xs, k=n)) for _ in range(draws))
    lo = meds[int((1 - level) / 2 * (draws - 1))]
    hi = meds[int((1 + level) / 2 * (draws - 1))]
    return lo, hi


class Churns:
    """Churn times per customer, to find the churn an alert or a score was followed by."""

    def __init__(self, churns: Iterable[tuple[str, float]]) -> None:
        by: dict[str, list[float]] = defaultdict(list)
        for c, t in churns:
            by[c].append(t)
        self.by = {c: sorted(ts) for c, ts in by.items()}

    def next_after(self, customer: str, t: float, horizon_s: float) -> float | None:
        """The first churn of ``customer`` in ``(t, t + horizon]``."""
        ts = self.by.get(customer)
        if not ts:
            return None
        i = bisect.bisect_right(ts, t)
        return ts[i] if i < len(ts) and ts[i] <= t + horizon_s else None


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def measure(alerts: Sequence[tuple[str, float]], churns: Sequence[tuple[str, float]], *,
            horizon_s: float, origin: float, clock: float,
            active: Sequence[tuple[str, float]] | None = None,
            budget: Mapping[int, float] | None = None) -> dict[str, Any]:
    """Weekly and total figures (see the module docstring).

    ``alerts``: (customer, event time) of every alert record; ``active``: (customer, time of
    their first score in a week), one per customer and week, for the base rate and the rate per
    1,000 active customers; ``budget``: week index -> the week's alert budget.
    """
    ch = Churns(churns)
    weeks: dict[int, dict[str, Any]] = defaultdict(lambda: {
        "alerts": 0, "firsts": {}, "active": 0, "active_resolved": 0, "active_churned": 0,
        "churns": 0, "warned": 0})

    def week(t: float) -> int:
        return math.floor((t - origin) / WEEK_S)

    by_customer: dict[str, list[float]] = defaultdict(list)
    for c, t in alerts:
        w = weeks[week(t)]
        w["alerts"] += 1
        if c not in w["firsts"] or t < w["firsts"][c]:
            w["firsts"][c] = t
        by_customer[c].append(t)
    for ts in by_customer.values():
        ts.sort()
    for c, t in active or ():
        w = weeks[week(t)]
        w["active"] += 1
        if ch.next_after(c, t, horizon_s) is not None:
            w["active_resolved"] += 1
            w["active_churned"] += 1
        elif clock >= t + horizon_s:
            w["active_resolved"] += 1
    first_warn: list[float] = []
    for c, t in churns:
        if t - horizon_s < origin:
            continue
        w = weeks[week(t)]
        w["churns"] += 1
        ts = by_customer.get(c, [])
        i = bisect.bisect_left(ts, t - horizon_s)
        if i < len(ts) and ts[i] < t:
            w["warned"] += 1
            first_warn.append((t - ts[i]) / DAY_S)

    rows: list[dict[str, Any]] = []
    totals = {"alerts": 0, "customers": 0, "resolved": 0, "right": 0, "active": 0,
              "active_resolved": 0, "active_churned": 0, "churns": 0, "warned": 0}
    all_days: list[float] = []
    for i in sorted(weeks):
        w = weeks[i]
        right = resolved = 0
        days: list[float] = []
        for c, t in w["firsts"].items():
            at = ch.next_after(c, t, horizon_s)
            if at is not None:
                right += 1
                resolved += 1
                days.append((at - t) / DAY_S)
            elif clock >= t + horizon_s:
                resolved += 1
        all_days += days
        row = {"week": i, "start": origin + i * WEEK_S, "alerts": w["alerts"],
               "customers": len(w["firsts"]), "resolved": resolved, "right": right,
               "precision": _rate(right, resolved), "active": w["active"],
               "per_1000_active": (1000 * len(w["firsts"]) / w["active"]
                                   if w["active"] else None),
               "base_rate": _rate(w["active_churned"], w["active_resolved"]),
               "active_churned": w["active_churned"], "active_resolved": w["active_resolved"],
               "churns": w["churns"], "warned": w["warned"],
               "recall": _rate(w["warned"], w["churns"]), "warning_days": quartiles(days)}
        if budget is not None and i in budget:
            row["budget"] = budget[i]
            row["volume_ratio"] = w["alerts"] / budget[i] if budget[i] > 0 else None
        rows.append(row)
        for k in ("alerts", "active", "active_resolved", "active_churned", "churns",
                  "warned"):
            totals[k] += w[k]
        totals["customers"] += len(w["firsts"])
        totals["resolved"] += resolved
        totals["right"] += right
    total: dict[str, Any] = dict(totals)
    total.update(precision=_rate(totals["right"], totals["resolved"]),
                 base_rate=_rate(totals["active_churned"], totals["active_resolved"]),
                 recall=_rate(totals["warned"], totals["churns"]),
                 per_1000_active=(1000 * totals["customers"] / totals["active"]
                                  if totals["active"] else None),
                 warning_days=quartiles(all_days), warned_churner_days=quartiles(first_warn),
                 warned_churner_median_90ci=median_interval(first_warn))
    return {"weeks": rows, "total": total}


def summarize_weeks(rows: Sequence[Mapping[str, Any]], skip_weeks: int = 0,
                    until: float | None = None) -> dict[str, Any]:
    """The figures of the done-when checks over the weeks after the first ``skip_weeks``
    (and, with ``until``, only weeks that ended by then: a history that stops on a Tuesday has
    a last week of two days): volume against budget (min, max, share of weeks within 15 %),
    precision over base rate.

    >>> summarize_weeks([{"week": 0, "alerts": 9, "budget": 10.0, "right": 1, "resolved": 9,
    ...                   "active_churned": 0, "active_resolved": 0, "base_rate": 0.1}])["weeks"]
    1
    """
    kept = [r for r in rows if r["week"] >= skip_weeks
            and (until is None or r.get("start", -math.inf) + WEEK_S <= until)]
    ratios = [r["alerts"] / r["budget"] for r in kept if r.get("budget")]
    right = sum(r["right"] for r in kept)
    resolved = sum(r["resolved"] for r in kept)
    churned = sum(r["active_churned"] for r in kept)
    active = sum(r["active_resolved"] for r in kept)
    precision = right / resolved if resolved else None
    base = churned / active if active else None
    return {"weeks": len(kept),
            "volume_ratio_min": min(ratios) if ratios else None,
            "volume_ratio_max": max(ratios) if ratios else None,
            "weeks_within_15pct": (sum(0.85 <= x <= 1.15 for x in ratios) / len(ratios)
                                   if ratios else None),
            "precision": precision, "base_rate": base,
            "precision_over_base": (precision / base if precision is not None and base
                                    else None)}

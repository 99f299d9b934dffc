"""Did the retention actions work? Churn of actioned customers against the holdout (pure).

Unit of analysis: the customer (the holdout is drawn per customer). Each customer counts from
their first retention decision at event time ``t0``; the outcome is *churned* when a churn label
falls in ``(t0, t0 + horizon]``, *stayed* when the labels' clock (the newest label time seen, or
an explicit ``as_of``) has passed ``t0 + horizon`` without one, and *unresolved* otherwise.

The effect is the difference of churn rates, actioned − holdout (negative: actions prevent
churn), with Newcombe's hybrid score interval (method 10, from two Wilson intervals; good
coverage at small counts and rates near 0), and the relative risk with Katz's log interval.

>>> d = [Decision(f"a{i}", 0.0, False) for i in range(400)] + [
...      Decision(f"h{i}", 0.0, True) for i in range(100)]
>>> labels = [Label(f"a{i}", 10.0, True) for i in range(40)] + [
...           Label(f"h{i}", 10.0, True) for i in range(20)] + [Label("zz", 1e9, True)]
>>> r = compare(resolve(d, labels, horizon_s=100.0))
>>> r.actioned.rate, r.holdout.rate, round(r.difference, 3)
(0.1, 0.2, -0.1)
>>> [round(x, 3) for x in (r.low, r.high)]
[-0.192, -0.026]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Decision:
    customer_id: str
    ts: float
    holdout: bool
    action: str = ""  # for the holdout: the action it would have got
    segment: str = ""
    driver_category: str = ""


@dataclass(frozen=True, slots=True)
class Label:
    customer_id: str
    ts: float
    churned: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    customer_id: str
    holdout: bool
    t0: float
    churned: bool | None  # None = unresolved
    action: str = ""
    segment: str = ""
    driver_category: str = ""


def resolve(decisions: Iterable[Decision], labels: Iterable[Label], horizon_s: float,
            as_of: float | None = None) -> list[Outcome]:
    """One outcome per customer, from their first decision (see the module docstring)."""
    first: dict[str, Decision] = {}
    for d in decisions:
        seen = first.get(d.customer_id)
        if seen is None or d.ts < seen.ts:
            first[d.customer_id] = d
    churns: dict[str, list[float]] = {}
    clock = -math.inf
    for label in labels:
        clock = max(clock, label.ts)
        if label.churned and label.customer_id in first:
            churns.setdefault(label.customer_id, []).append(label.ts)
    if as_of is not None:
        clock = as_of
    out = []
    for cid, d in sorted(first.items()):
        end = d.ts + horizon_s
        churned = any(d.ts < t <= end for t in churns.get(cid, ()))
        result: bool | None = True if churned else (False if clock >= end else None)
        out.append(Outcome(cid, d.holdout, d.ts, result, d.action, d.segment, d.driver_category))
    return out


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion.

    >>> [round(v, 4) for v in wilson(10, 100)]
    [0.0552, 0.1744]
    >>> wilson(0, 0)
    (0.0, 1.0)
    """
    if n == 0:
        return 0.0, 1.0
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """p1 − p2 and its hybrid score interval (Newcombe 1998, method 10).

    >>> [round(v, 4) for v in newcombe(56, 70, 48, 80)]   # Newcombe's example
    [0.2, 0.0524, 0.3339]
    """
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    return (d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def relative_risk(x1: int, n1: int, x2: int, n2: int,
                  z: float = Z95) -> tuple[float, float, float] | None:
    """p1 / p2 with Katz's log interval (None when a count is 0).

    >>> [round(v, 3) for v in relative_risk(40, 400, 20, 100)]
    [0.5, 0.306, 0.816]
    """
    if min(x1, x2) == 0 or n1 == 0 or n2 == 0:
        return None
    rr = (x1 / n1) / (x2 / n2)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    return rr, rr * math.exp(-z * se), rr * math.exp(z * se)


@dataclass(frozen=True, slots=True)
class Arm:
    customers: int
    resolved: int
    churned: int

    @property
    def rate(self) -> float:
        return self.churned / self.resolved if self.resolved else math.nan


@dataclass(frozen=True, slots=True)
class UpliftReport:
    actioned: Arm
    holdout: Arm
    difference: float  # actioned - holdout churn rate
    low: float
    high: float
    relative_risk: tuple[float, float, float] | None
    confidence: float

    @property
    def significant(self) -> bool:
        return self.high < 0.0 or self.low > 0.0


def arm(outcomes: Iterable[Outcome]) -> Arm:
    items = list(outcomes)
    resolved = [o for o in items if o.churned is not None]
    return Arm(len(items), len(resolved), sum(1 for o in resolved if o.churned))


def compare(outcomes: Iterable[Outcome], z: float = Z95,
            confidence: float = 0.95) -> UpliftReport:
    """The effect of the actions; needs at least one resolved customer in each arm."""
    items = list(outcomes)
    a = arm(o for o in items if not o.holdout)
    h = arm(o for o in items if o.holdout)
    if a.resolved == 0 or h.resolved == 0:
        raise ValueError("no resolved customer in the actioned or the holdout arm yet")
    d, lo, hi = newcombe(a.churned, a.resolved, h.churned, h.resolved, z)
    rr = relative_risk(a.churned, a.resolved, h.churned, h.resolved, z)
    return UpliftReport(a, h, d, lo, hi, rr, confidence)


def z_of(confidence: float) -> float:
    """Two-sided normal quantile.

    >>> round(z_of(0.95), 4), round(z_of(0.9), 4)
    (1.96, 1.6449)
    """
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)


BREAKDOWNS = ("action", "segment", "driver_category")


@dataclass(frozen=True, slots=True)
class Cell:
    """The uplift of one group (e.g. one action × segment), against the holdout of the group."""

    key: tuple[str, ...]
    report: UpliftReport | None  # None: too few resolved customers in an arm
    actioned: Arm
    holdout: Arm


def breakdown(outcomes: Iterable[Outcome], by: tuple[str, ...], z: float = Z95,
              confidence: float = 0.95, min_resolved: int = 10) -> list[Cell]:
    """The effect per group of ``by`` (fields of :class:`Outcome`: action, segment,
    driver_category). Each group's actioned customers are compared with the *same group's*
    holdout customers (for ``action``, those who would have got that action), so a group is an
    experiment of its own; groups with fewer than ``min_resolved`` resolved customers in an arm
    get no estimate.

    >>> o = [Outcome(f"a{i}", False, 0.0, i < 10, "call", "x") for i in range(100)] + [
    ...      Outcome(f"h{i}", True, 0.0, i < 20, "call", "x") for i in range(100)]
    >>> [c] = breakdown(o, ("action",))
    >>> c.key, round(c.report.difference, 2) if c.report else None
    (('call',), -0.1)
    """
    for name in by:
        if name not in BREAKDOWNS:
            raise ValueError(f"cannot break down by {name!r}: one of {', '.join(BREAKDOWNS)}")
    groups: dict[tuple[str, ...], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(tuple(str(getattr(o, name)) for name in by), []).append(o)
    cells = []
    for key in sorted(groups):
        items = groups[key]
        a = arm(o for o in items if not o.holdout)
        h = arm(o for o in items if o.holdout)
        report = (compare(items, z, confidence)
                  if min(a.resolved, h.resolved) >= max(min_resolved, 1) else None)
        cells.append(Cell(key, report, a, h))
    return cells

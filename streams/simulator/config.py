"""Knobs of the customer simulator: plans, price increases and :class:`SimulationConfig`."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from streams.simulator.mechanisms import Mechanisms

Billing = Literal["monthly", "annual", "other"]


@dataclass(frozen=True)
class Plan:
    """A subscription plan.

    Parameters
    ----------
    name : str
        Identifier used in event properties (``from_plan`` / ``to_plan``) and in the truth file.
    price : float
        Price charged per billing period, in currency units.
    period_days : int
        Billing period in days: 30 (monthly) or 365 (annual); other periods work too.
    tier : int
        Rank within the billing family (0 = cheapest); upgrades and downgrades move one tier
        within the same family.
    share : float
        Relative popularity among new customers (normalised over all plans).
    """

    name: str
    price: float
    period_days: int
    tier: int
    share: float

    @property
    def billing(self) -> Billing:
        """``"monthly"`` (up to 31 days), ``"annual"`` (365 days or more) or ``"other"``."""
        if self.period_days <= 31:
            return "monthly"
        return "annual" if self.period_days >= 365 else "other"


DEFAULT_PLANS: tuple[Plan, ...] = (
    Plan("basic_monthly", 9.99, 30, 0, 0.34),
    Plan("pro_monthly", 29.99, 30, 1, 0.26),
    Plan("team_monthly", 99.0, 30, 2, 0.10),
    Plan("basic_annual", 99.0, 365, 0, 0.14),
    Plan("pro_annual", 299.0, 365, 1, 0.12),
    Plan("team_annual", 990.0, 365, 2, 0.04),
)


@dataclass(frozen=True)
class PriceIncrease:
    """A list-price increase of one plan, announced to its active customers on ``day``.

    Parameters
    ----------
    plan : str
        Name of the plan whose price rises.
    day : int
        0-based index of the simulated day on which the increase is announced and applies to
        subsequent charges.
    pct : float
        Relative increase, e.g. ``0.2`` for +20 %.
    """

    plan: str
    day: int
    pct: float


@dataclass(frozen=True)
class SimulationConfig:
    """Every knob of one simulation; the same config always yields byte-identical output.

    Parameters
    ----------
    seed : int
        Seed of the single :class:`numpy.random.Generator` driving the run.
    n_customers : int
        Customers simulated over the whole period (including those already subscribed).
    start : datetime.date
        First simulated day (UTC midnight).
    days : int
        Length of the simulated period in days.
    initial_share : float
        Share of customers already subscribed at ``start``; the others join uniformly
        over the period.
    churn_base_rate : float
        Target monthly churn rate: probability that an active customer churns within
        30 days, averaged over the population (the simulator calibrates every day's
        expected churn count to it).
    signal_strength : float
        How strongly behaviour drives (non-random) churn: a customer's relative churn
        weight is ``exp(signal_strength * z)`` with ``z`` the standardised risk score.
        0 makes churn independent of behaviour.
    no_warning_share : float
        Share of churn that happens with no behavioural warning (uniformly at random).
    events_per_active_day : float
        Mean number of activity events (``session`` + ``feature_use`` + add-on
        ``purchase``) per active customer-day; the rare types (tickets, complaints,
        subscription charges, plan changes) come on top at fixed rates (about 0.06 per
        customer-day in all).
    regime_change_day : int or None
        From this day on, what drives churn changes: support tickets and complaints stop
        mattering and price sensitivity dominates (see ``dynamics.RISK_WEIGHTS``).
    return_share : float
        Probability that a churned customer comes back (once) 3 to 17 weeks later.
    plans : tuple of Plan
        Available plans.
    price_increases : tuple of PriceIncrease or None
        Price increases; ``None`` means the default schedule (+20 % on ``plans[0]`` at 35 %
        of the period, +15 % on ``plans[1]`` at 70 %), ``()`` means none.
    mechanisms : Mechanisms or None
        Extra churn mechanisms, label noise, another vocabulary
        (:mod:`streams.simulator.mechanisms`); ``None`` is the default world.
    """

    seed: int = 42
    n_customers: int = 5_000
    start: dt.date = dt.date(2026, 1, 1)
    days: int = 120
    initial_share: float = 0.6
    churn_base_rate: float = 0.04
    signal_strength: float = 2.0
    no_warning_share: float = 0.2
    events_per_active_day: float = 3.0
    regime_change_day: int | None = None
    return_share: float = 0.05
    plans: tuple[Plan, ...] = DEFAULT_PLANS
    price_increases: tuple[PriceIncrease, ...] | None = None
    mechanisms: Mechanisms | None = None

    def __post_init__(self) -> None:
        _check(self.seed >= 0, "seed must be >= 0")
        _check(self.n_customers >= 1, "n_customers must be >= 1")
        _check(self.days >= 1, "days must be >= 1")
        _check(0.0 <= self.initial_share <= 1.0, "initial_share must be in [0, 1]")
        _check(0.0 <= self.churn_base_rate < 1.0, "churn_base_rate must be in [0, 1)")
        _check(self.signal_strength >= 0.0, "signal_strength must be >= 0")
        _check(0.0 <= self.no_warning_share <= 1.0, "no_warning_share must be in [0, 1]")
        _check(self.events_per_active_day > 0.0, "events_per_active_day must be > 0")
        _check(0.0 <= self.return_share <= 1.0, "return_share must be in [0, 1]")
        if self.regime_change_day is not None:
            _check(self.regime_change_day >= 0, "regime_change_day must be >= 0")
        _check(len(self.plans) >= 1, "at least one plan is required")
        names = [p.name for p in self.plans]
        _check(len(set(names)) == len(names), "plan names must be unique")
        for p in self.plans:
            _check(p.name != "none" and p.name.isidentifier(), f"bad plan name {p.name!r}")
            _check(p.price > 0 and p.period_days > 0 and p.share >= 0, f"bad plan {p.name!r}")
        _check(sum(p.share for p in self.plans) > 0, "plan shares must not all be 0")
        for inc in self.price_increases or ():
            _check(inc.plan in names, f"price increase of unknown plan {inc.plan!r}")
            _check(0 <= inc.day < self.days, f"price increase day {inc.day} outside the period")
            _check(inc.pct > -1.0, "price increase pct must be > -1")

    @property
    def event_types(self) -> tuple[str, ...]:
        """Wire names of the engine's event type codes."""
        from streams.simulator.schema import EVENT_TYPES, INTERNAL_EVENT_TYPES

        if self.mechanisms is None:
            return EVENT_TYPES
        return self.mechanisms.vocabulary or INTERNAL_EVENT_TYPES

    @property
    def resolved_price_increases(self) -> tuple[PriceIncrease, ...]:
        """The price increases actually applied (the default schedule when ``None``)."""
        if self.price_increases is not None:
            return self.price_increases
        schedule = [PriceIncrease(self.plans[0].name, int(self.days * 0.35), 0.20)]
        if len(self.plans) > 1:
            schedule.append(PriceIncrease(self.plans[1].name, int(self.days * 0.70), 0.15))
        return tuple(schedule)

    def replace(self, **changes: Any) -> SimulationConfig:
        """Return a copy with some knobs changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)

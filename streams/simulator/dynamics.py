"""Latent customer state, its daily evolution, and the churn decision.

Engagement is a log-activity level ``baseline + x``: ``x`` is a mean-reverting random walk
(Ornstein-Uhlenbeck) pulled towards a target ``m`` that is 0 except after a sharp decline
(a shock lowers ``m`` and ``x`` at once; ``m`` then recovers with a 60-day half-life).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streams.simulator.population import Population

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

THETA = 0.12  # daily pull of x towards m
SIGMA = 0.20  # daily noise of x
SHOCK_P = 0.005  # daily probability of a sharp decline
SHOCK_SIZE = (0.7, 1.6)  # drop of the target m, log units
SHOCK_IMMEDIATE = 0.6  # share of the drop felt by x the same day
M_DECAY = 0.5 ** (1 / 60)
FAST, SLOW = 0.2, 0.04  # EMA weights of engagement (about 5 and 25 days)
EXPERIENCE_DECAY = 0.5 ** (1 / 30)  # complaints, payment failures: 30-day half-life
PRICE_DECAY = 0.5 ** (1 / 60)
INTENT_ALPHA = 1.0 / 14.0

RISK_DRIVERS: tuple[str, ...] = (
    "engagement_decline",
    "low_engagement",
    "open_tickets",
    "complaints",
    "payment_failures",
    "price_increase",
)
#: Weight of each driver in the risk score, before and after ``regime_change_day``.
RISK_WEIGHTS: dict[str, F64] = {
    "before": np.array([1.6, 0.8, 0.9, 0.8, 1.3, 0.8]),
    "after": np.array([1.2, 0.6, 0.0, 0.0, 1.3, 3.0]),
}
#: Share of a plan's churn that happens on renewal days (the rest: mid-term cancellation).
RENEWAL_SHARE = {"monthly": 0.4, "annual": 0.3, "other": 0.35}
MAX_DAILY_P = 0.9
Z_CLIP = (-3.0, 5.0)


@dataclass
class State:
    """Mutable per-customer state (arrays of length ``n``)."""

    n: int
    n_drivers: int = len(RISK_DRIVERS)
    status: npt.NDArray[np.int8] = field(init=False)  # 0 not joined, 1 active, 2 churned
    x: F64 = field(init=False)
    m: F64 = field(init=False)
    ema_fast: F64 = field(init=False)
    ema_slow: F64 = field(init=False)
    open_tickets: I64 = field(init=False)
    complaints: F64 = field(init=False)
    payment_failures: F64 = field(init=False)
    price_shock: F64 = field(init=False)
    retry_day: I64 = field(init=False)
    retries: I64 = field(init=False)
    intent: F64 = field(init=False)  # (n, len(RISK_DRIVERS)); NaN until first assessed
    plan: I64 = field(init=False)  # current plan index
    anchor: I64 = field(init=False)  # billing anchor day (join or return)
    since: I64 = field(init=False)  # day the current active spell started

    def __post_init__(self) -> None:
        n = self.n
        self.status = np.zeros(n, np.int8)
        for name in ("x", "m", "ema_fast", "ema_slow", "complaints", "payment_failures"):
            setattr(self, name, np.zeros(n))
        self.price_shock = np.zeros(n)
        self.open_tickets = np.zeros(n, np.int64)
        self.retry_day = np.full(n, -1, np.int64)
        self.retries = np.zeros(n, np.int64)
        self.intent = np.full((n, self.n_drivers), np.nan)
        self.plan = np.zeros(n, np.int64)
        self.anchor = np.zeros(n, np.int64)
        self.since = np.zeros(n, np.int64)

    def reset_experience(self, idx: I64) -> None:
        """Forget a returning customer's grievances and decline."""
        self.m[idx] = 0.0
        self.x[idx] *= 0.3
        self.ema_fast[idx] = self.x[idx]
        self.ema_slow[idx] = self.x[idx]
        self.open_tickets[idx] = 0
        self.complaints[idx] = 0.0
        self.payment_failures[idx] = 0.0
        self.price_shock[idx] = 0.0
        self.retry_day[idx] = -1
        self.intent[idx] = np.nan


def step_latent(state: State, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    """Advance engagement and decay experiences by one day for every customer.

    Returns
    -------
    ndarray of bool
        Customers hit by a sharp decline today (they may file a ticket about it).
    """
    n = state.n
    shocked = rng.random(n) < SHOCK_P
    drop = np.where(shocked, rng.uniform(*SHOCK_SIZE, n), 0.0)
    state.m = state.m * M_DECAY - drop
    state.x = state.x + THETA * (state.m - state.x) + SIGMA * rng.standard_normal(n)
    state.x -= SHOCK_IMMEDIATE * drop
    state.ema_fast += FAST * (state.x - state.ema_fast)
    state.ema_slow += SLOW * (state.x - state.ema_slow)
    state.complaints *= EXPERIENCE_DECAY
    state.payment_failures *= EXPERIENCE_DECAY
    state.price_shock *= PRICE_DECAY
    return shocked


def risk_components(state: State, pop: Population, idx: I64) -> F64:
    """Per-driver risk of customers ``idx`` (shape ``(len(idx), len(RISK_DRIVERS))``)."""
    fast, slow = state.ema_fast[idx], state.ema_slow[idx]
    return np.column_stack(
        [
            np.maximum(slow - fast, 0.0),
            np.maximum(-(pop.baseline[idx] + fast), 0.0),
            np.minimum(state.open_tickets[idx], 3).astype(np.float64),
            state.complaints[idx],
            state.payment_failures[idx],
            pop.price_sensitivity[idx] * state.price_shock[idx] / 0.1,
        ]
    )


@dataclass(frozen=True)
class ChurnDraw:
    """Outcome of one day's churn decision for the eligible customers.

    Attributes
    ----------
    churned : ndarray of bool
    behaviour : ndarray of bool
        Among churners: True for behaviour-driven, False for no-warning churn.
    hazard : ndarray of float64
        Today's churn probability of each eligible customer.
    z : ndarray of float64
        Standardised churn intent.
    driver : ndarray of int64
        Index into :data:`RISK_DRIVERS` of the largest component of the intent.
    """

    churned: npt.NDArray[np.bool_]
    behaviour: npt.NDArray[np.bool_]
    hazard: F64
    z: F64
    driver: I64


def update_intent(state: State, idx: I64, contributions: F64) -> F64:
    """Blend today's weighted risk into the churn intent of ``idx`` and return it.

    Intent is an exponentially weighted mean (about two weeks) of each weighted risk
    driver: grievances build up before they turn into churn, and fade once resolved.
    """
    prev = state.intent[idx]
    fresh = np.isnan(prev[:, 0])[:, None]
    intent = np.where(fresh, contributions, prev + INTENT_ALPHA * (contributions - prev))
    state.intent[idx] = intent
    return intent


def draw_churn(
    rng: np.random.Generator,
    intent: F64,
    day_weight: F64,
    daily_rate: float,
    signal_strength: float,
    no_warning_share: float,
) -> ChurnDraw:
    """Decide who churns today among the eligible customers, given their intent.

    The expected number of churners is ``daily_rate * len(eligible)``: a share
    ``no_warning_share`` of it is spread in proportion to ``day_weight`` alone, the rest
    in proportion to ``day_weight * exp(signal_strength * z)``; probabilities above
    ``MAX_DAILY_P`` are capped and the excess spread over the others.
    """
    n = intent.shape[0]
    risk = intent.sum(axis=1)
    sd = float(risk.std())
    z = np.clip((risk - risk.mean()) / sd, *Z_CLIP) if sd > 1e-12 else np.zeros(n)
    w_b = day_weight * np.exp(signal_strength * z)
    share_b = (1.0 - no_warning_share) * w_b / w_b.sum()
    share = share_b + no_warning_share * day_weight / day_weight.sum()
    hazard = _water_fill(daily_rate * n * share, MAX_DAILY_P)
    u = rng.random(n)
    churned = u < hazard
    behaviour = u < hazard * share_b / np.maximum(share, 1e-300)
    driver = np.argmax(intent, axis=1).astype(np.int64)
    return ChurnDraw(churned, behaviour, hazard, z, driver)


def _water_fill(p: F64, cap: float) -> F64:
    """Cap probabilities at ``cap``, handing the excess to the others pro rata (same total)."""
    p = p.copy()
    for _ in range(20):
        over = p > cap
        if not over.any():
            break
        excess = float((p[over] - cap).sum())
        p[over] = cap
        free = p < cap
        total = float(p[free].sum())
        if total <= 0.0:
            break
        p[free] *= 1.0 + excess / total
    return np.minimum(p, cap)


def day_weights(period_days: int, billing: str) -> tuple[float, float]:
    """Relative churn weight of a plan's ordinary days and of its renewal days.

    Both billing families get the same mean weight per day (1.0), so the family changes
    *when* customers churn (at renewal or mid-term), not how much.
    """
    share = RENEWAL_SHARE[billing]
    return (1.0 - share) * period_days / max(period_days - 1, 1), share * period_days

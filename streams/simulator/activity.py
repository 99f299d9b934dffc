"""Generation of one day's customer events, vectorised over the active customers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streams.simulator import schema as s
from streams.simulator.clock import sample_ms
from streams.simulator.columns import EventBuffer
from streams.simulator.config import SimulationConfig
from streams.simulator.dynamics import State
from streams.simulator.population import Population

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]

FEATURES_PER_SESSION = 1.4
PURCHASE_SHARE = 0.01  # of activity events
SESSION_SHARE = (1.0 - PURCHASE_SHARE) / (1.0 + FEATURES_PER_SESSION)
TICKET_RATE = 0.012  # per customer-day, times ticket proneness
SHOCK_TICKET_RATE = 0.5  # extra tickets on the day of a sharp decline
UNRESOLVED_P = 0.3
RESOLVE_P = 0.04  # daily chance an open ticket gets resolved
COMPLAINT_RATE = (0.0015, 0.08)  # base, per open ticket
PLAN_CHANGE_P = 0.003
RETRY_AFTER_DAYS, MAX_RETRIES = 3, 2


@dataclass
class Catalog:
    """Plans of a run, with their current (possibly increased) prices."""

    price: F64
    period: I64
    up: I64  # plan one tier up in the same billing family, -1 if none
    down: I64

    @staticmethod
    def from_config(config: SimulationConfig) -> Catalog:
        """Build the catalog of ``config.plans``."""
        plans = config.plans
        k = len(plans)
        up = np.full(k, -1, np.int64)
        down = np.full(k, -1, np.int64)
        for i, p in enumerate(plans):
            for j, q in enumerate(plans):
                if q.billing == p.billing and q.tier == p.tier + 1:
                    up[i] = j
                if q.billing == p.billing and q.tier == p.tier - 1:
                    down[i] = j
        price = np.array([p.price for p in plans], dtype=np.float64)
        period = np.array([p.period_days for p in plans], dtype=np.int64)
        return Catalog(price, period, up, down)


def emit_activity(
    buf: EventBuffer,
    rng: np.random.Generator,
    act: I64,
    engagement: F64,
    day_ms: int,
    rate: float,
    props: s.PropertyTable,
    features_per_session: F64 | None = None,
) -> None:
    """Sessions, feature uses (inside sessions) and add-on purchases of customers ``act``.

    ``rate`` is the day's expected activity events per average customer (knob times the
    weekly factor); ``engagement`` is relative to the active population's mean.
    ``features_per_session`` (per customer) replaces the constant depth of use; the expected
    number of activity events stays the same (deeper sessions are fewer).
    """
    if features_per_session is None:
        n_sessions = rng.poisson(SESSION_SHARE * rate * engagement)
    else:
        share = (1.0 - PURCHASE_SHARE) / (1.0 + features_per_session)
        n_sessions = rng.poisson(share * rate * engagement)
    cust = np.repeat(act, n_sessions)
    ts = day_ms + sample_ms(rng, cust.shape[0])
    buf.add(cust, ts, s.SESSION)
    if features_per_session is None:
        n_features = rng.poisson(FEATURES_PER_SESSION, cust.shape[0])
    else:
        n_features = rng.poisson(np.repeat(features_per_session, n_sessions))
    f_cust = np.repeat(cust, n_features)
    f_ts = np.repeat(ts, n_features) + rng.integers(2_000, 1_500_000, f_cust.shape[0])
    f_ts = np.minimum(f_ts, day_ms + s.MS_PER_DAY - 1)
    which = rng.choice(len(s.FEATURES), f_cust.shape[0], p=s.FEATURE_POPULARITY)
    buf.add(f_cust, f_ts, s.FEATURE_USE, prop=props.feature_codes[which])
    p_cust = np.repeat(act, rng.poisson(PURCHASE_SHARE * rate * engagement))
    amount = np.round(rng.lognormal(np.log(12.0), 0.6, p_cust.shape[0]), 2)
    p_ts = day_ms + sample_ms(rng, p_cust.shape[0])
    buf.add(p_cust, p_ts, s.PURCHASE, np.maximum(amount, 0.99), props.addon_code)


def emit_support(
    buf: EventBuffer,
    rng: np.random.Generator,
    state: State,
    pop: Population,
    act: I64,
    shocked: Bool,
    day_ms: int,
    props: s.PropertyTable,
) -> None:
    """Support tickets (some stay unresolved) and complaints (driven by open tickets)."""
    lam = TICKET_RATE * pop.ticket_proneness[act] + SHOCK_TICKET_RATE * shocked[act]
    t_cust = np.repeat(act, rng.poisson(lam))
    topic = rng.choice(len(s.TICKET_TOPICS), t_cust.shape[0], p=s.TICKET_TOPIC_SHARES)
    t_ts = day_ms + sample_ms(rng, t_cust.shape[0], "office")
    kept = buf.add(t_cust, t_ts, s.SUPPORT_TICKET, prop=props.topic_codes[topic])
    unresolved = t_cust[kept & (rng.random(t_cust.shape[0]) < UNRESOLVED_P)]
    state.open_tickets -= rng.binomial(state.open_tickets, RESOLVE_P)
    np.add.at(state.open_tickets, unresolved, 1)
    lam_c = COMPLAINT_RATE[0] + COMPLAINT_RATE[1] * state.open_tickets[act]
    c_cust = np.repeat(act, rng.poisson(lam_c))
    c_ts = day_ms + sample_ms(rng, c_cust.shape[0], "office")
    kept = buf.add(c_cust, c_ts, s.COMPLAINT)
    np.add.at(state.complaints, c_cust[kept], 1.0)


def emit_billing(
    buf: EventBuffer,
    rng: np.random.Generator,
    state: State,
    pop: Population,
    catalog: Catalog,
    due: I64,
    day: int,
    day_ms: int,
    props: s.PropertyTable,
) -> None:
    """Charge customers ``due`` (renewals and retries): a renewal purchase or a failure."""
    plan = state.plan[due]
    price = catalog.price[plan]
    ts = day_ms + sample_ms(rng, due.shape[0], "billing")
    failed = rng.random(due.shape[0]) < pop.card_risk[due]
    ok = ~failed
    buf.add(due[ok], ts[ok], s.PURCHASE, price[ok], props.renewal_codes[plan[ok]])
    state.retry_day[due[ok]] = -1
    state.retries[due[ok]] = 0
    bad = due[failed]
    kept = buf.add(
        bad, ts[failed], s.PAYMENT_FAILURE, price[failed], props.payment_codes[plan[failed]]
    )
    state.payment_failures[bad[kept]] += 1.0
    again = state.retries[bad] < MAX_RETRIES
    state.retry_day[bad] = np.where(again, day + RETRY_AFTER_DAYS, -1)
    state.retries[bad] = np.where(again, state.retries[bad] + 1, 0)


def emit_plan_changes(
    buf: EventBuffer,
    rng: np.random.Generator,
    state: State,
    catalog: Catalog,
    act: I64,
    day_ms: int,
    props: s.PropertyTable,
) -> None:
    """Upgrades of engaged customers and downgrades of disengaged ones."""
    movers = act[rng.random(act.shape[0]) < PLAN_CHANGE_P]
    plan = state.plan[movers]
    level = state.ema_fast[movers]
    target = np.where(
        level > 0.25, catalog.up[plan], np.where(level < -0.25, catalog.down[plan], -1)
    )
    moving = target >= 0
    movers, plan, target = movers[moving], plan[moving], target[moving]
    reason = np.where(target == catalog.up[plan], s.UPGRADE, s.DOWNGRADE)
    ts = day_ms + sample_ms(rng, movers.shape[0], "office")
    code = props.change_codes[reason, plan + 1, target]
    kept = buf.add(movers, ts, s.PLAN_CHANGE, catalog.price[target], code)
    state.plan[movers[kept]] = target[kept]


def emit_starts(
    buf: EventBuffer,
    state: State,
    catalog: Catalog,
    who: I64,
    start_ms: I64,
    reason: int,
    props: s.PropertyTable,
) -> None:
    """Signup or reactivation: a ``plan_change`` from ``"none"`` and the first charge 1 ms later."""
    plan = state.plan[who]
    price = catalog.price[plan]
    buf.add(who, start_ms, s.PLAN_CHANGE, price, props.change_codes[reason, 0, plan])
    buf.add(who, start_ms + 1, s.PURCHASE, price, props.subscription_codes[plan])


def emit_price_notices(
    buf: EventBuffer,
    rng: np.random.Generator,
    state: State,
    catalog: Catalog,
    act: I64,
    plan: int,
    pct: float,
    day_ms: int,
    props: s.PropertyTable,
) -> None:
    """Raise ``plan``'s price by ``pct`` and notify its active customers (09:00-10:00)."""
    catalog.price[plan] = round(float(catalog.price[plan]) * (1.0 + pct), 2)
    who = act[state.plan[act] == plan]
    ts = day_ms + 9 * 3_600_000 + rng.integers(0, 3_600_000, who.shape[0], dtype=np.int64)
    price = np.full(who.shape[0], catalog.price[plan])
    code = int(props.change_codes[s.PRICE_INCREASE, plan + 1, plan])
    kept = buf.add(who, ts, s.PLAN_CHANGE, price, code)
    state.price_shock[who[kept]] = np.maximum(state.price_shock[who[kept]], pct)

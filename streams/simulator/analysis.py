"""Offline checks of a simulation: realised rates, and how predictable churn is.

These helpers use only the published events for features and the ground truth for the
target, as an offline evaluation would. Nothing here is needed to generate data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streams.simulator import schema as s
from streams.simulator.simulation import Simulation

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

FEATURE_NAMES: tuple[str, ...] = (
    "log_sessions_14d",
    "session_trend_14d",  # log((last 14 + 1) / (prior 14 + 1))
    "tickets_30d",
    "complaints_30d",
    "payment_failures_30d",
    "price_increase_60d",
)


def monthly_churn_rate(sim: Simulation) -> float:
    """Realised monthly churn rate: ``1 - (1 - churns / eligible customer-days) ** 30``."""
    exposure = float(sim.daily["eligible"].sum())
    return 1.0 - (1.0 - len(sim.labels) / exposure) ** 30 if exposure else float("nan")


def activity_per_active_day(sim: Simulation) -> float:
    """Realised activity events per active customer-day (what ``events_per_active_day`` sets).

    Activity is sessions, feature uses and add-on purchases; subscription charges are
    ``purchase`` events too but are billing, not activity.
    """
    active = float(sim.daily["active"].sum())
    ev = sim.events
    addon = (ev.etype == s.PURCHASE) & (ev.prop == sim.properties.addon_code)
    count = int(np.count_nonzero((ev.etype == s.SESSION) | (ev.etype == s.FEATURE_USE) | addon))
    return count / active if active else float("nan")


@dataclass(frozen=True)
class Observations:
    """One row per (customer, observation day): features, target, who and when."""

    X: F64
    y: npt.NDArray[np.int8]
    customer: I64
    day: I64


def _daily_counts(sim: Simulation, mask: npt.NDArray[np.bool_], days: int) -> npt.NDArray[np.int64]:
    """Cumulative per-customer event counts: ``out[c, d]`` = events before day ``d``."""
    n = sim.config.n_customers
    day = (sim.events.ts_ms[mask] - s.midnight_ms(sim.config.start)) // s.MS_PER_DAY
    flat = sim.events.customer[mask].astype(np.int64) * days + day
    counts = np.bincount(flat, minlength=n * days).reshape(n, days)
    out = np.zeros((n, days + 1), np.int64)
    np.cumsum(counts, axis=1, out=out[:, 1:])
    return out


def daily_counts(sim: Simulation, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Cumulative per-customer counts of the ``mask`` events: ``out[c, d]`` = before day d."""
    return _daily_counts(sim, mask, sim.config.days)


@dataclass(frozen=True)
class Cohort:
    """Customers observed at the start of day ``t`` and whether they churn within the horizon."""

    t: int
    who: I64
    y: npt.NDArray[np.int8]


def cohorts(sim: Simulation, obs_days: Sequence[int], horizon: int = 30) -> list[Cohort]:
    """Customers who joined 28+ days before each observation day and have not churned (truth).

    The target is a first *true* churn (ground truth, not the published labels) in
    ``[t, t + horizon)`` days, as in :func:`observations`.
    """
    truth = sim.ground_truth()
    start = s.midnight_ms(sim.config.start)
    join = (s.to_epoch_ms(truth["join_ts"]) - start) // s.MS_PER_DAY
    churn_ms = s.to_epoch_ms(truth["churn_ts"])
    churn = np.where(churn_ms < 0, np.iinfo(np.int64).max // 4, (churn_ms - start) // s.MS_PER_DAY)
    out = []
    for t in obs_days:
        who = np.flatnonzero((join <= t - 28) & (churn >= t))
        out.append(Cohort(t, who.astype(np.int64), (churn[who] < t + horizon).astype(np.int8)))
    return out


def observations(sim: Simulation, obs_days: Sequence[int], horizon: int = 30) -> Observations:
    """Per-customer aggregates at the start of each observation day, and churn within ``horizon``.

    A customer is observed on day ``t`` if they joined at least 28 days before and have not
    churned yet (customers who came back after a churn are not observed again). The
    target is a first churn in ``[t, t + horizon)`` days.
    """
    ev, props, days = sim.events, sim.properties, sim.config.days
    truth = sim.ground_truth()
    start = s.midnight_ms(sim.config.start)
    join = (s.to_epoch_ms(truth["join_ts"]) - start) // s.MS_PER_DAY
    churn_ms = s.to_epoch_ms(truth["churn_ts"])
    churn = np.where(churn_ms < 0, np.iinfo(np.int64).max // 4, (churn_ms - start) // s.MS_PER_DAY)
    price_codes = props.change_codes[s.PRICE_INCREASE].ravel()
    notice = (ev.etype == s.PLAN_CHANGE) & np.isin(ev.prop, price_codes[price_codes >= 0])
    cum = {
        "sessions": _daily_counts(sim, ev.etype == s.SESSION, days),
        "tickets": _daily_counts(sim, ev.etype == s.SUPPORT_TICKET, days),
        "complaints": _daily_counts(sim, ev.etype == s.COMPLAINT, days),
        "failures": _daily_counts(sim, ev.etype == s.PAYMENT_FAILURE, days),
        "notices": _daily_counts(sim, notice, days),
    }
    xs, ys, cs, ds = [], [], [], []
    for t in obs_days:
        if not 28 <= t <= days - horizon:
            raise ValueError(f"observation day {t} needs 28 days of history and {horizon} ahead")
        who = np.flatnonzero((join <= t - 28) & (churn >= t))

        def window(name: str, length: int, end: int, who: I64 = who) -> F64:
            c = cum[name]
            counts: F64 = (c[who, end] - c[who, max(end - length, 0)]).astype(np.float64)
            return counts

        last, prior = window("sessions", 14, t), window("sessions", 14, t - 14)
        xs.append(
            np.column_stack(
                [
                    np.log1p(last),
                    np.log((last + 1) / (prior + 1)),
                    window("tickets", 30, t),
                    window("complaints", 30, t),
                    window("failures", 30, t),
                    window("notices", 60, t),
                ]
            )
        )
        ys.append((churn[who] < t + horizon).astype(np.int8))
        cs.append(who.astype(np.int64))
        ds.append(np.full(who.shape[0], t, np.int64))
    return Observations(np.vstack(xs), np.concatenate(ys), np.concatenate(cs), np.concatenate(ds))


@dataclass(frozen=True)
class LogisticModel:
    """Logistic regression on standardised features (fitted by :func:`fit_logistic`)."""

    mean: F64
    scale: F64
    coef: F64  # intercept first

    def predict_proba(self, X: F64) -> F64:
        """Probability of the positive class."""
        z = (X - self.mean) / self.scale
        proba: F64 = 1.0 / (1.0 + np.exp(-(self.coef[0] + z @ self.coef[1:])))
        return proba


def fit_logistic(
    X: F64, y: npt.NDArray[np.integer], l2: float = 1e-2, iters: int = 30
) -> LogisticModel:
    """Fit a ridge-penalised logistic regression by Newton's method (IRLS)."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    Z = np.column_stack([np.ones(X.shape[0]), (X - mean) / scale])
    beta = np.zeros(Z.shape[1])
    penalty = l2 * np.eye(Z.shape[1])
    penalty[0, 0] = 0.0
    target = y.astype(np.float64)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(Z @ beta)))
        grad = Z.T @ (p - target) + penalty @ beta
        hess = (Z * (p * (1 - p))[:, None]).T @ Z + penalty
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return LogisticModel(mean, scale, beta)


def roc_auc(y: npt.NDArray[np.integer], score: F64) -> float:
    """Area under the ROC curve (Mann-Whitney statistic, ties counted half)."""
    pos = y.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(score.shape[0])
    sorted_scores = score[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def heldout_auc(
    sim: Simulation, obs_days: Sequence[int], test_share: float = 0.3, seed: int = 0
) -> float:
    """AUC on held-out customers of a logistic model of :data:`FEATURE_NAMES`."""
    obs = observations(sim, obs_days)
    rng = np.random.default_rng(seed)
    test_customer = rng.random(sim.config.n_customers) < test_share
    test = test_customer[obs.customer]
    model = fit_logistic(obs.X[~test], obs.y[~test])
    return roc_auc(obs.y[test], model.predict_proba(obs.X[test]))
